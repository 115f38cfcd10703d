//! STUB
#![allow(dead_code, unused)]
use serde::Serialize;
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EncryptionMethods(pub u32);
impl EncryptionMethods {
    pub fn names(&self) -> String {
        format!("{:#x}", self.0)
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EncryptionLevel(pub u32);
impl EncryptionLevel {
    pub fn name(&self) -> String {
        format!("{:#x}", self.0)
    }
}
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientCore {
    pub client_build: u32,
    pub client_name: String,
}
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientSecurity {
    pub encryption_methods: EncryptionMethods,
    pub ext_encryption_methods: u32,
}
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerSecurity {
    pub encryption_method: EncryptionMethods,
    pub encryption_level: EncryptionLevel,
}
