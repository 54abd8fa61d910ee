//! Integration tests of the runtime: real WASM plugins in the real host.

mod common;
mod engine;
mod executor;
mod fidelity;
mod loading;
mod people;
mod pipelines;
mod plugins;
mod privacy;
mod report_pdf;
mod rules;
mod sandbox;
mod sources;
mod spec_errors;
