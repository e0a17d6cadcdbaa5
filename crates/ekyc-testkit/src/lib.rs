//! Test kit shared by the test suites, the load generator and `ekyc eval pad`: access to
//! the labelled development photos in `../shared/faces` (never copied into the repository),
//! head turns rendered from them ([`headturn`], [`splat`]), presentation attacks
//! ([`attacks`]: prints, screen replays, per-frame perturbation) and the labelled attack set
//! the `ekyc-pad-set` binary writes ([`pad_set`]), synthetic ID documents, a test PKI, TLS
//! material and a real `redis-server`.
//!
//! Every frame rendered from a still photo is an **attack** (species `rendered_still`), not
//! a genuine head turn: it is what anyone holding one photo of a person can make.

pub mod attacks;
pub mod bad_images;
pub mod dataset;
pub mod frames;
pub mod headturn;
pub mod idcard;
pub mod pad_set;
pub mod pki;
pub mod redis_server;
pub mod splat;
pub mod tls;
