//! The gRPC adapter: every handler hands its request to the engine and maps the error.

use std::sync::{Arc, OnceLock};

use ekyc_proto::v1 as pb;
use ekyc_proto::v1::orchestrator_server::Orchestrator;
use tonic::{Request, Response, Status};

use crate::engine::Engine;
use crate::error::OrchestratorError;

#[derive(Debug, Clone)]
pub struct OrchestratorService {
    engine: Arc<OnceLock<Arc<Engine>>>,
}

impl OrchestratorService {
    pub fn new(engine: Arc<OnceLock<Arc<Engine>>>) -> Self {
        Self { engine }
    }

    fn engine(&self) -> Result<Arc<Engine>, Status> {
        self.engine
            .get()
            .cloned()
            .ok_or_else(|| Status::from(OrchestratorError::Unavailable("the orchestrator is starting; retry shortly".into())))
    }
}

#[tonic::async_trait]
impl Orchestrator for OrchestratorService {
    async fn list_policies(&self, _: Request<pb::ListPoliciesRequest>) -> Result<Response<pb::ListPoliciesResponse>, Status> {
        Ok(Response::new(self.engine()?.list_policies()))
    }

    async fn start_session(&self, r: Request<pb::StartSessionRequest>) -> Result<Response<pb::StartSessionResponse>, Status> {
        Ok(Response::new(self.engine()?.start_session(r.into_inner()).await?))
    }

    async fn add_frame(&self, r: Request<pb::AddFrameRequest>) -> Result<Response<pb::SessionProgress>, Status> {
        Ok(Response::new(self.engine()?.add_frame(r.into_inner()).await?))
    }

    async fn add_document(&self, r: Request<pb::AddDocumentRequest>) -> Result<Response<pb::SessionProgress>, Status> {
        Ok(Response::new(self.engine()?.add_document(r.into_inner()).await?))
    }

    async fn add_signature(&self, r: Request<pb::AddSignatureRequest>) -> Result<Response<pb::SessionProgress>, Status> {
        Ok(Response::new(self.engine()?.add_signature(r.into_inner()).await?))
    }

    async fn get_session(&self, r: Request<pb::GetSessionRequest>) -> Result<Response<pb::SessionProgress>, Status> {
        Ok(Response::new(self.engine()?.get_session(r.into_inner()).await?))
    }

    async fn finish(&self, r: Request<pb::FinishRequest>) -> Result<Response<pb::VerificationResult>, Status> {
        Ok(Response::new(self.engine()?.finish(r.into_inner()).await?))
    }

    async fn verify(&self, r: Request<pb::VerifyRequest>) -> Result<Response<pb::VerificationResult>, Status> {
        Ok(Response::new(self.engine()?.verify(r.into_inner()).await?))
    }

    async fn cancel_session(&self, r: Request<pb::CancelSessionRequest>) -> Result<Response<pb::SessionProgress>, Status> {
        Ok(Response::new(self.engine()?.cancel(r.into_inner()).await?))
    }
}
