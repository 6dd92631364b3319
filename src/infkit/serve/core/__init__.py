"""The serving core every engine uses: decode, runtime, service, explain and overlay (what a request goes through),
the archives, keys, ports, process identity, the nginx front and the gRPC client. It imports no engine."""
