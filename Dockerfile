# roomgate gateway and egress worker image (same image, different command).
FROM node:20-bookworm

# ffmpeg: ingest/egress pipelines; python3/make/g++: the mediasoup worker build in `npm ci`.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg python3 make g++ \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts ./scripts
# The worker binary is cached under /root/.cache/roomgate inside this layer.
RUN npm ci --omit=dev
COPY . .

ENV ROOMGATE_BIND=0.0.0.0 \
    ROOMGATE_DATA_DIR=/data
VOLUME /data
EXPOSE 7880 1935
CMD ["node", "bin/roomgate.mjs", "start"]
