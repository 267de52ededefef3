//! Alibaba.com (国际站) probe over the IOP gateway. There is no seller-info call: the probe
//! refreshes the token when it is near expiry or refused (the refresh answer names the seller,
//! remembered between checks) and makes the cheap read `/alibaba/icbu/product/group/get`.

use super::iop::{self, Flavor};
use super::{Probe, ProbeCtx, Probed};
use crate::model::Marketplace;

/// The Alibaba.com probe.
pub struct Alibaba;

impl Probe for Alibaba {
    fn marketplace(&self) -> Marketplace {
        Marketplace::Alibaba
    }

    async fn probe(&self, ctx: &ProbeCtx<'_>) -> Probed {
        iop::probe(ctx, Flavor::Alibaba).await
    }
}
