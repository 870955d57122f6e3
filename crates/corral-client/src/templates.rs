//! Template build jobs (`/v1/templates/builds`) and the `template_building` answer of
//! a create that names a shipped recipe not built yet.

use corral_types::api::{
    TemplateBuild, TemplateBuildCreateRequest, TemplateBuildEvent, TemplateBuildList,
};
use futures_util::Stream;
use hyper::Method;

use crate::{seg, stream, with_query, Client, ClientError};

impl Client {
    /// `POST /v1/templates/builds` (admin): starts a build job.
    pub async fn start_template_build(
        &self,
        req: &TemplateBuildCreateRequest,
    ) -> Result<TemplateBuild, ClientError> {
        self.t
            .json(Method::POST, "/v1/templates/builds", Some(req))
            .await
    }

    /// `GET /v1/templates/builds`: build jobs, newest first.
    pub async fn list_template_builds(
        &self,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<TemplateBuildList, ClientError> {
        let path = with_query("/v1/templates/builds", Vec::new(), cursor, limit);
        self.t.json(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/templates/builds/{id}`.
    pub async fn get_template_build(&self, id: &str) -> Result<TemplateBuild, ClientError> {
        let path = format!("/v1/templates/builds/{}", seg(id));
        self.t.json(Method::GET, &path, None::<&()>).await
    }

    /// `DELETE /v1/templates/builds/{id}` (admin): cancels; the job once it ended.
    pub async fn cancel_template_build(&self, id: &str) -> Result<TemplateBuild, ClientError> {
        let path = format!("/v1/templates/builds/{}", seg(id));
        self.t.json(Method::DELETE, &path, None::<&()>).await
    }

    /// `GET /v1/templates/builds/{id}/events`: every event from the start, then each as
    /// it happens; ends after `done`, `failed` or `cancelled`.
    pub async fn template_build_events(
        &self,
        id: &str,
    ) -> Result<
        impl Stream<Item = Result<TemplateBuildEvent, ClientError>> + Send + Unpin,
        ClientError,
    > {
        let path = format!("/v1/templates/builds/{}/events", seg(id));
        let resp = self
            .t
            .send_json(
                Method::GET,
                &path,
                None::<&()>,
                Some("application/x-ndjson"),
            )
            .await?;
        Ok(stream::ndjson(resp.into_body()))
    }
}

impl ClientError {
    /// For a create answered `template_building` (409): the id of the build to follow.
    pub fn template_build_id(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, message, .. } if code == "template_building" => message
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .find(|w| w.starts_with("tb_") && w.len() > 3),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_id_is_found_in_a_template_building_answer() {
        let e = ClientError::Api {
            status: 409,
            code: "template_building".into(),
            message:
                "template python is not built yet: build tb_0000000112ab34cd started; follow ..."
                    .into(),
        };
        assert_eq!(e.template_build_id(), Some("tb_0000000112ab34cd"));
        let other = ClientError::Api {
            status: 409,
            code: "conflict".into(),
            message: "build tb_1".into(),
        };
        assert_eq!(other.template_build_id(), None);
    }
}
