//! `bling-ledger bench …`: speed targets measured against a baseline taken in the same run,
//! so the ratio means something on any machine.

pub mod fleet;
pub mod ingest;
pub mod notify;
pub mod projections;
pub mod queries;
pub mod sync;
pub mod webhooks;

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

/// The `n`-th valid CPF (check digits computed), so every benchmark customer is distinct.
pub(crate) fn cpf(n: u64) -> String {
    // Spread over the 9-digit bases so that millions of customers stay distinct.
    let base = format!("{:09}", 100_000_000 + (n * 7_919) % 800_000_000);
    let mut digits: Vec<u32> = base.chars().filter_map(|c| c.to_digit(10)).collect();
    for len in [9usize, 10] {
        let sum: u32 = digits
            .iter()
            .take(len)
            .enumerate()
            .map(|(i, d)| d * (len as u32 + 1 - i as u32))
            .sum();
        let r = sum % 11;
        digits.push(if r < 2 { 0 } else { 11 - r });
    }
    digits
        .iter()
        .filter_map(|d| char::from_digit(*d, 10))
        .collect()
}
