//! (Being written.) Routes of this module are merged into the router by [`routes`], and
//! its OpenAPI paths into the document by [`Doc`].

use crate::AppState;
use axum::Router;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi()]
pub struct Doc;

pub fn routes() -> Router<AppState> {
    Router::new()
}
