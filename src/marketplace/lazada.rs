//! Lazada probe over the same gateway family as AliExpress (LazOP, "system API" signing:
//! upper-case hex HMAC over the path and the sorted parameters): `GET /seller/get` on the
//! store's country gateway, with token refresh on `auth.lazada.com` when the access token is near
//! expiry or refused. The seller's `status` (ACTIVE, INACTIVE, DELETED) tells a blocked shop.

use super::iop::{self, Flavor};
use super::{Probe, ProbeCtx, Probed};
use crate::model::Marketplace;

/// The Lazada probe.
pub struct Lazada;

impl Probe for Lazada {
    fn marketplace(&self) -> Marketplace {
        Marketplace::Lazada
    }

    async fn probe(&self, ctx: &ProbeCtx<'_>) -> Probed {
        iop::probe(ctx, Flavor::Lazada).await
    }
}
