# Sluice: multi-stage build, small non-root runtime image.
#
#   docker build -t sluice .
#   docker run -p 8080:8080 sluice                      # built-in mock provider, offline
#   docker run -p 8080:8080 -e OPENAI_API_KEY=sk-... \
#     -v $PWD/my-sluice.toml:/etc/sluice/sluice.toml:ro sluice
#
# The config is read from /etc/sluice/sluice.toml (mount yours there); the
# image ships the documented default (mock provider only) at that path.
# /var/lib/sluice is the one writable directory, for the spend store
# (`[spend] store = "/var/lib/sluice/spend.redb"`); mount a volume there to
# keep spend across containers.
#
# tests/image_layout.rs reads this file, lays out the runtime stage's files
# in a chroot as the COPY lines below say, and runs `sluice serve` and the
# HEALTHCHECK there as the USER below: keep these instructions in the exec
# (JSON) form it parses.

# The compiler the project is tested with (Cargo.toml's rust-version): the
# function order in link/sluice.order names functions as this compiler does
# (docs/performance.md, "Function order"); another one would build, unordered.
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
# Dependencies first, so code changes do not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY actors/Cargo.toml actors/Cargo.toml
COPY upstream/Cargo.toml upstream/Cargo.toml
RUN mkdir -p src actors/src upstream/src benches \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs actors/src/lib.rs upstream/src/lib.rs \
 && cargo build --release --locked --bin sluice 2>/dev/null || true
COPY . .
RUN touch src/main.rs src/lib.rs actors/src/lib.rs upstream/src/lib.rs \
 && cargo build --release --locked --bin sluice \
 && cp target/release/sluice /sluice \
 && mkdir -p /var/lib/sluice

# glibc, libgcc and CA roots, no shell, uid 65532 ("nonroot"). Its glibc
# (2.36) reads the packed relocations build.rs asks lld for (DT_RELR, 2.36+).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /sluice /usr/local/bin/sluice
COPY config/sluice.toml /etc/sluice/sluice.toml
COPY --from=build --chown=65532:65532 /var/lib/sluice /var/lib/sluice
VOLUME ["/var/lib/sluice"]
# Numeric, not "nonroot": Kubernetes' runAsNonRoot can only verify a numeric
# user (deploy/k8s sets the same uid/gid; scripts/check-deploy compares them).
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/sluice", "health", "--addr", "127.0.0.1:8080"]
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["serve", "--config", "/etc/sluice/sluice.toml", "--listen", "0.0.0.0:8080"]
