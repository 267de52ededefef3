//! AliExpress probe over the IOP gateway: `/sync?method=aliexpress.merchant.profile.get`
//! (`profile.seller_id` compared with the configured account), with token refresh when the
//! access token is near expiry or refused.

use super::iop::{self, Flavor};
use super::{Probe, ProbeCtx, Probed};
use crate::model::Marketplace;

/// The AliExpress probe.
pub struct Aliexpress;

impl Probe for Aliexpress {
    fn marketplace(&self) -> Marketplace {
        Marketplace::Aliexpress
    }

    async fn probe(&self, ctx: &ProbeCtx<'_>) -> Probed {
        iop::probe(ctx, Flavor::Aliexpress).await
    }
}
