# distkv's container image: the static binary on scratch, run as a non-root
# user, its data on a volume. Build it with `make image` (tag distkv:latest):
# the binary is built on the host with the Go toolchain and staged in
# $(IMAGE_STAGE) (bin/image), so this build pulls no base image and needs no
# registry. scratch has no shell, so there is no RUN: the data directory is
# staged empty and copied in with its owner.
FROM scratch
ARG STAGE=bin/image
COPY ${STAGE}/distkv /usr/local/bin/distkv
# A named volume mounted here starts as a copy of this directory, owner
# included, so the node can write to it.
COPY --chown=65532:65532 ${STAGE}/data /var/lib/distkv
USER 65532:65532
VOLUME /var/lib/distkv
# Listen on every interface; a node must then be told the address it
# publishes (--advertise-http, --advertise-peer): it refuses to publish
# 0.0.0.0. See deploy/compose.yaml and docs/operations.md#containers.
ENV DISTKV_DATA_DIR=/var/lib/distkv \
    DISTKV_HTTP=0.0.0.0:8000 \
    DISTKV_PEER=0.0.0.0:9000
EXPOSE 8000 9000
ENTRYPOINT ["/usr/local/bin/distkv"]
CMD ["server"]
