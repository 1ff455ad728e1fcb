// Egress worker entry point (BullMQ). The egress engine issue fills this in; until then it says so
// and exits non-zero, so a compose service or a supervisor shows the truth instead of idling.
process.stderr.write('roomgate egress worker: not implemented yet (see the egress engine issue)\n');
process.exit(78); // EX_CONFIG: nothing to run
