//! Network Level Authentication with credentials (`proxy --fresh-cert --nla-user`): rdpdiag is
//! the CredSSP server toward the client and the CredSSP client toward the host (NTLMv2), so it
//! reads the host's own CredSSP verdict in clear. Sans-IO: the relay feeds bytes, randomness and
//! the time.

pub mod credssp;
pub mod ntlm;
