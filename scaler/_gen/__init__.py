"""Generated protobuf/gRPC code. Never edit by hand: run `make proto`."""
