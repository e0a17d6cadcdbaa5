//! Integration tests of the vision core on the real models and the development photos.

mod common;
mod decode;
mod faces;
mod models;
mod pose;
