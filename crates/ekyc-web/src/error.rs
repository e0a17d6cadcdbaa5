//! The web port's one error enum.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum WebError {
    #[error("web settings: {0}")]
    Config(String),
}
