//! STUB
#![allow(dead_code, unused)]
use super::DecodeError;
use super::gcc;
use serde::Serialize;
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectInitial {
    pub client_core: Option<gcc::ClientCore>,
    pub client_security: Option<gcc::ClientSecurity>,
}
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectResponse {
    pub result: u8,
    pub server_security: Option<gcc::ServerSecurity>,
}
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum McsPdu {
    ConnectInitial(ConnectInitial),
    ConnectResponse(ConnectResponse),
    DisconnectProviderUltimatum { reason: u8 },
    Other { choice: u8 },
}
pub fn decode(b: &[u8]) -> Result<McsPdu, DecodeError> {
    Ok(McsPdu::Other { choice: 0 })
}
pub fn dpu_reason_name(r: u8) -> &'static str {
    "x"
}
