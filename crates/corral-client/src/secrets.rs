//! Secrets (`/v1/secrets`): no call ever returns a value.

use corral_types::api::{Secret, SecretList, SecretPutRequest};
use hyper::Method;

use crate::{seg, Client, ClientError};

impl Client {
    /// `PUT /v1/secrets/{name}` (operator or admin): store or replace a secret.
    pub async fn put_secret(
        &self,
        name: &str,
        req: &SecretPutRequest,
    ) -> Result<Secret, ClientError> {
        let path = format!("/v1/secrets/{}", seg(name));
        self.t.json(Method::PUT, &path, Some(req)).await
    }

    /// `GET /v1/secrets`: the tenant's secrets' metadata.
    pub async fn list_secrets(&self) -> Result<SecretList, ClientError> {
        self.t.json(Method::GET, "/v1/secrets", None::<&()>).await
    }

    /// `GET /v1/secrets/{name}`: one secret's metadata.
    pub async fn get_secret(&self, name: &str) -> Result<Secret, ClientError> {
        let path = format!("/v1/secrets/{}", seg(name));
        self.t.json(Method::GET, &path, None::<&()>).await
    }

    /// `DELETE /v1/secrets/{name}` (operator or admin).
    pub async fn delete_secret(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("/v1/secrets/{}", seg(name));
        self.t.unit(Method::DELETE, &path, None::<&()>).await
    }
}
