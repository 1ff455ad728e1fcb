// The API half of scripts/obs-check.sh, through the real livekit-server-sdk:
//   create-ingress <room> <identity>   prints "<rtmp url> <stream key> <ingress id>"
//   wait-publishing <ingress id> <s>   waits until the ingress is PUBLISHING with video; prints its state
//   start-egress <room> <identity> <filepath>  a participant egress to an MP4; prints the egress id
//   stop-egress <egress id>            stops it, waits for the end, prints status and file location
//   delete-ingress <ingress id>
// Gateway and keys from ROOMGATE_URL, ROOMGATE_API_KEY, ROOMGATE_API_SECRET (npm start's defaults).
import { IngressState_Status } from '@livekit/protocol';
import { EgressClient, EgressStatus, EncodedFileOutput, EncodedFileType, IngressClient, IngressInput } from 'livekit-server-sdk';
import { sleep } from '../src/time.ts';

const url = process.env.ROOMGATE_URL ?? 'http://127.0.0.1:7880';
const key = process.env.ROOMGATE_API_KEY ?? 'devkey';
const secret = process.env.ROOMGATE_API_SECRET ?? 'secret';
const ingress = new IngressClient(url, key, secret);
const egress = new EgressClient(url, key, secret);

async function until<T>(what: string, seconds: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${seconds} s waiting for ${what}`);
    await sleep(250);
  }
}

const [cmd, ...args] = process.argv.slice(2);
switch (cmd) {
  case 'create-ingress': {
    const info = await ingress.createIngress(IngressInput.RTMP_INPUT, { name: 'obs-check', roomName: args[0]!, participantIdentity: args[1]!, participantName: 'OBS' });
    console.log(`${info.url} ${info.streamKey} ${info.ingressId}`);
    break;
  }
  case 'wait-publishing': {
    const info = await until('the ingress to publish video', Number(args[1] ?? 60), async () => {
      const [i] = await ingress.listIngress({ ingressId: args[0]! });
      return i?.state?.status === IngressState_Status.ENDPOINT_PUBLISHING && i.state.video ? i : undefined;
    });
    console.log(JSON.stringify({ video: info.state?.video?.toJson(), audio: info.state?.audio?.toJson() }));
    break;
  }
  case 'start-egress': {
    const info = await egress.startParticipantEgress(args[0]!, args[1]!, { file: new EncodedFileOutput({ fileType: EncodedFileType.MP4, filepath: args[2]! }) });
    console.log(info.egressId);
    break;
  }
  case 'stop-egress': {
    await egress.stopEgress(args[0]!);
    const info = await until('the egress to end', 60, async () => {
      const [i] = await egress.listEgress({ egressId: args[0]! });
      return i && i.status >= EgressStatus.EGRESS_COMPLETE ? i : undefined;
    });
    console.log(`${EgressStatus[info.status]} ${info.fileResults[0]?.location ?? ''} ${info.error}`);
    break;
  }
  case 'delete-ingress':
    await ingress.deleteIngress(args[0]!);
    break;
  default:
    console.error('usage: obs-check.ts create-ingress|wait-publishing|start-egress|stop-egress|delete-ingress …');
    process.exit(2);
}
