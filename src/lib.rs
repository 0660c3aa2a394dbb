//! Lethe: a gRPC model-serving guard that makes forgetting real at two depths — unlearning in
//! the weights and a runtime suppression layer on every generation.
pub mod cli;
pub mod config;
pub mod eval;
pub mod follow;
pub mod forget;
pub mod guard;
pub mod http;
pub mod live;
pub mod metrics;
pub mod model;
pub mod server;
pub mod unlearn;
pub mod upstream;

/// Generated gRPC types and services of `lethe.v1`.
pub mod proto {
    tonic::include_proto!("lethe.v1");
    /// Encoded descriptors of the protos, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/lethe_descriptor.bin"));
}
