//! doppel's marketplace: sellers list a finished job's synthetic twin, buyers
//! pay through a payment provider, and a double-entry ledger records every
//! charge and refund. It sits on `doppel-platform` (accounts, authorization,
//! audit, the metadata store) and knows nothing of tables or pipelines: what
//! may be listed (the privacy gate's inputs) is decided by the application
//! core and handed in as a [`NewListing`].
//!
//! # Overview
//!
//! - [`Market`]: listings (privacy-gated), full-text search, purchases whose
//!   state follows the provider's *fetched* payment, refunds, reconciliation,
//!   seller accounts and payout details, the seller dashboard, delivery
//!   records.
//! - [`payments::PaymentProvider`]: the one trait every provider implements —
//!   [`payments::fake::FakeProvider`] (built in: hosted checkout,
//!   Stripe-signed webhooks), [`payments::stripe::StripeProvider`] (Connect
//!   destination charges) and [`payments::flutterwave::FlutterwaveProvider`]
//!   (subaccount splits); [`payments::Money`] is integer minor units.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo(db: doppel_platform::Db, seller: doppel_platform::authz::Principal) -> doppel_platform::Result<()> {
//! use std::sync::Arc;
//! use doppel_market::{Market, NewListing};
//! use doppel_market::payments::fake::FakeProvider;
//! use doppel_platform::audit::RequestMeta;
//! use doppel_platform::settings::PaymentSettings;
//!
//! let fake = FakeProvider::new(db.clone(), "whsec_test".into(), "http://127.0.0.1:8080".into(), 300, false);
//! let market = Market::new(db, Arc::new(fake), PaymentSettings::default());
//! let listing = market
//!     .create_listing(&RequestMeta::default(), &seller, NewListing {
//!         job_id: "job_…".into(),
//!         output_name: "synthetic.parquet".into(),
//!         output_key: "outputs/…/synthetic.parquet".into(),
//!         title: "Census income twin".into(),
//!         description: "32,561 synthetic rows of UCI Adult.".into(),
//!         tags: vec!["census".into()],
//!         category: "demographics".into(),
//!         price_minor: 1500,
//!         currency: "EUR".into(),
//!         license: "CC-BY-4.0".into(),
//!         preview: serde_json::json!({"rows": []}),
//!         quality_score: Some(0.93),
//!         privacy_score: Some(70.0),
//!         failed_checks: Vec::new(),
//!     })
//!     .await?;
//! assert_eq!(listing.price.minor, 1500);
//! # Ok(()) }
//! ```

mod market;
pub mod payments;

pub use market::*;
