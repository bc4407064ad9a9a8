//! `bling-ledger bench …`: speed targets measured against a baseline taken in the same run,
//! so the ratio means something on any machine.

pub mod ingest;
pub mod projections;
pub mod queries;
pub mod sync;

use std::time::Duration;

use crate::store::{scratch, Db, StoreError};

/// A scratch PostgreSQL database for one benchmark, dropped afterwards.
pub struct ScratchDb {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl ScratchDb {
    pub async fn create(admin_url: &str) -> Result<ScratchDb, StoreError> {
        let admin = Db::connect(admin_url, 1).await?;
        let name = format!("bl_bench_{}", uuid::Uuid::new_v4().simple());
        scratch::create_database(&admin, &name)
            .await
            .map_err(|e| match e {
                StoreError::UnsupportedUrl(_) => StoreError::UnsupportedUrl(format!(
                    "benchmarks need a postgres:// URL (got {admin_url})"
                )),
                e => e,
            })?;
        admin.close().await;
        let url = match admin_url.rfind('/') {
            Some(i)
                if admin_url[..i].contains("//") && i > admin_url.find("//").unwrap_or(0) + 1 =>
            {
                format!("{}/{name}", &admin_url[..i])
            }
            _ => format!("{}/{name}", admin_url.trim_end_matches('/')),
        };
        Ok(ScratchDb {
            admin_url: admin_url.to_string(),
            name,
            url,
        })
    }

    pub async fn drop_database(self) -> Result<(), StoreError> {
        let admin = Db::connect(&self.admin_url, 1).await?;
        scratch::drop_database(&admin, &self.name).await?;
        admin.close().await;
        Ok(())
    }
}

pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}
