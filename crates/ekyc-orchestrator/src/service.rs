//! The gRPC adapter: every handler authenticates the caller from the `authorization`
//! metadata ([`crate::auth`]), checks the call is allowed on the session it names, hands the
//! request to the engine and maps the error.

use std::sync::{Arc, OnceLock};

use ekyc_proto::v1 as pb;
use ekyc_proto::v1::orchestrator_server::Orchestrator;
use tonic::{Request, Response, Status};

use crate::auth::{Call, Caller};
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

    /// The engine and the caller, once the caller may make `call` on `session_id`.
    fn admit<T>(&self, r: &Request<T>, call: Call, session_id: Option<&str>) -> Result<(Arc<Engine>, Caller), Status> {
        let engine = self.engine()?;
        let authorization = r.metadata().get("authorization").map(|v| v.to_str().unwrap_or(""));
        let caller = engine.authenticate(authorization)?;
        engine.auth().authorize(&caller, call, session_id)?;
        Ok((engine, caller))
    }
}

#[tonic::async_trait]
impl Orchestrator for OrchestratorService {
    async fn list_policies(&self, r: Request<pb::ListPoliciesRequest>) -> Result<Response<pb::ListPoliciesResponse>, Status> {
        let (engine, _) = self.admit(&r, Call::ListPolicies, None)?;
        Ok(Response::new(engine.list_policies()))
    }

    async fn start_session(&self, r: Request<pb::StartSessionRequest>) -> Result<Response<pb::StartSessionResponse>, Status> {
        let (engine, caller) = self.admit(&r, Call::StartSession, None)?;
        Ok(Response::new(engine.start_session(&caller, r.into_inner()).await?))
    }

    async fn add_frame(&self, r: Request<pb::AddFrameRequest>) -> Result<Response<pb::SessionProgress>, Status> {
        let (engine, _) = self.admit(&r, Call::AddFrame, Some(&r.get_ref().session_id))?;
        Ok(Response::new(engine.add_frame(r.into_inner()).await?))
    }

    async fn add_document(&self, r: Request<pb::AddDocumentRequest>) -> Result<Response<pb::SessionProgress>, Status> {
        let (engine, _) = self.admit(&r, Call::AddDocument, Some(&r.get_ref().session_id))?;
        Ok(Response::new(engine.add_document(r.into_inner()).await?))
    }

    async fn add_signature(&self, r: Request<pb::AddSignatureRequest>) -> Result<Response<pb::SessionProgress>, Status> {
        let (engine, _) = self.admit(&r, Call::AddSignature, Some(&r.get_ref().session_id))?;
        Ok(Response::new(engine.add_signature(r.into_inner()).await?))
    }

    async fn get_session(&self, r: Request<pb::GetSessionRequest>) -> Result<Response<pb::SessionProgress>, Status> {
        let (engine, _) = self.admit(&r, Call::GetSession, Some(&r.get_ref().session_id))?;
        Ok(Response::new(engine.get_session(r.into_inner()).await?))
    }

    async fn finish(&self, r: Request<pb::FinishRequest>) -> Result<Response<pb::VerificationResult>, Status> {
        let (engine, _) = self.admit(&r, Call::Finish, Some(&r.get_ref().session_id))?;
        Ok(Response::new(engine.finish(r.into_inner()).await?))
    }

    async fn verify(&self, r: Request<pb::VerifyRequest>) -> Result<Response<pb::VerificationResult>, Status> {
        let (engine, _) = self.admit(&r, Call::Verify, Some(&r.get_ref().session_id))?;
        Ok(Response::new(engine.verify(r.into_inner()).await?))
    }

    async fn cancel_session(&self, r: Request<pb::CancelSessionRequest>) -> Result<Response<pb::SessionProgress>, Status> {
        let (engine, _) = self.admit(&r, Call::CancelSession, Some(&r.get_ref().session_id))?;
        Ok(Response::new(engine.cancel(r.into_inner()).await?))
    }
}
