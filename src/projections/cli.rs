//! The CLI's side of the projections: argument checks and readable output. `main.rs` only
//! parses flags and calls these. Every command first brings the views up to the log head
//! (safe next to a running server: batches serialize on the checkpoints), so it shows the
//! ledger as it is even when no server runs.

use std::fmt::Write as _;

use aggregates::ids::{InvoiceId, TenantId};
use anyhow::{anyhow, bail, Result};
use serde_json::Value;

use super::queries::{self, FailureFilter};
use super::{parse_name, Projections, RunnerSettings};
use crate::store::Db;

fn tenant(raw: &str) -> Result<TenantId> {
    TenantId::parse(raw).map_err(|e| anyhow!("--tenant: {e}"))
}

async fn caught_up(db: &Db) -> Result<()> {
    Projections::new(db.clone(), RunnerSettings::default())
        .catch_up()
        .await?;
    Ok(())
}

fn short_time(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_default()
}

/// `bling-ledger history --tenant T --invoice I [--json]`.
pub async fn history(db: &Db, tenant_raw: &str, invoice_raw: &str, json: bool) -> Result<String> {
    let tenant = tenant(tenant_raw)?;
    let invoice = InvoiceId::parse(invoice_raw).map_err(|e| anyhow!("--invoice: {e}"))?;
    caught_up(db).await?;
    let Some(h) = queries::history(db, tenant.as_str(), invoice.as_str()).await? else {
        bail!("no invoice {invoice} in tenant {tenant} (billed invoices only)");
    };
    if json {
        return Ok(format!("{}\n", queries::history_json(&h)));
    }
    let i = &h.invoice;
    let mut out = String::new();
    writeln!(
        out,
        "Invoice {} ({}) of {}: {}  customer {}  total {}",
        i.invoice_id,
        i.number,
        i.tenant,
        i.state.as_str().to_uppercase(),
        i.customer_id,
        projections::timeline::brl(i.total_centavos)
    )?;
    if let Some(order) = i.bling_order_id {
        writeln!(
            out,
            "Bling order {order}{}, situação {}",
            i.bling_number
                .map(|n| format!(" (nº {n})"))
                .unwrap_or_default(),
            i.situacao_name.as_deref().unwrap_or("-")
        )?;
    }
    if let Some(attention) = i.nfe_attention() {
        writeln!(out, "Attention: {attention}")?;
    }
    if let Some(kind) = &i.last_cause_kind {
        writeln!(
            out,
            "Last cause: {kind}: {}",
            i.last_cause_message.as_deref().unwrap_or("")
        )?;
        if let Some(advice) = projections::advice_for(kind) {
            writeln!(out, "Advice: {advice}")?;
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<23}  {:<20}  {:<14}  WHAT",
        "TIME (UTC)", "EVENT", "CONNECTION"
    )?;
    for e in &h.entries {
        let event = if e.subject == "invoice" {
            e.event_type.clone()
        } else {
            format!("{}:{}", e.subject, e.event_type)
        };
        writeln!(
            out,
            "{:<23}  {:<20}  {:<14}  {}",
            short_time(e.recorded_at_ms),
            event,
            e.connection_state,
            e.summary
        )?;
        let calls: Value = serde_json::from_str(&e.calls).unwrap_or(Value::Null);
        for c in calls.as_array().into_iter().flatten() {
            let status = c["status"]
                .as_u64()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "no answer".into());
            let error = match (c["error_type"].as_str(), c["error_message"].as_str()) {
                (Some(t), Some(m)) => format!("  {t}: {m}"),
                (Some(t), None) => format!("  {t}"),
                (None, Some(m)) => format!("  {m}"),
                (None, None) => String::new(),
            };
            writeln!(
                out,
                "{:<47}  ↳ Bling {} {} → {status} ({} ms){error}",
                "",
                c["method"].as_str().unwrap_or("?"),
                c["path"].as_str().unwrap_or("?"),
                c["latency_ms"].as_u64().unwrap_or(0)
            )?;
        }
        if let Some(kind) = &e.cause_kind {
            writeln!(
                out,
                "{:<47}  cause: {kind}: {}",
                "",
                e.cause_message.as_deref().unwrap_or("")
            )?;
            if let Some(advice) = projections::advice_for(kind) {
                writeln!(out, "{:<47}  advice: {advice}", "")?;
            }
        }
    }
    if h.truncated {
        writeln!(
            out,
            "(only the first {} entries; use --json for the API's shape)",
            queries::HISTORY_LIMIT
        )?;
    }
    Ok(out)
}

/// `bling-ledger failures --tenant T [--cause C] [--since …] [--until …] [--limit N] [--json]`.
pub async fn failures(
    db: &Db,
    tenant_raw: &str,
    cause: Option<&str>,
    since: Option<&str>,
    until: Option<&str>,
    limit: i64,
    json: bool,
) -> Result<String> {
    let tenant = tenant(tenant_raw)?;
    let cause = cause
        .map(|c| {
            projections::parse_cause_kind(c.trim())
                .map(str::to_string)
                .ok_or_else(|| {
                    anyhow!(
                        "--cause: unknown cause {c:?} (one of: {})",
                        aggregates::sync::FailureCause::CODES.join(", ")
                    )
                })
        })
        .transpose()?;
    let bound = |raw: Option<&str>, flag: &str, upper: bool| -> Result<Option<i64>> {
        raw.map(|r| {
            crate::audit::parse_time_bound(r, upper)
                .map(|t| t.timestamp_millis())
                .map_err(|p| anyhow!("{flag}: {p}"))
        })
        .transpose()
    };
    let since_ms = bound(since, "--since", false)?;
    let until_ms = bound(until, "--until", true)?;
    if let (Some(s), Some(u)) = (since_ms, until_ms) {
        if u <= s {
            bail!("--until must be after --since");
        }
    }
    if !(1..=100_000).contains(&limit) {
        bail!("--limit must be from 1 to 100000");
    }
    caught_up(db).await?;
    let mut filter = FailureFilter {
        cause,
        since_ms,
        until_ms,
        limit: limit.min(queries::MAX_LIMIT),
        before: None,
    };
    let mut rows = Vec::new();
    loop {
        let page = queries::failures(db, tenant.as_str(), &filter).await?;
        rows.extend(page.items);
        match page.next_cursor {
            Some(c) if (rows.len() as i64) < limit => {
                filter.before = Some(queries::parse_cursor(&c).map_err(|e| anyhow!(e))?);
                filter.limit = (limit - rows.len() as i64).min(queries::MAX_LIMIT);
            }
            _ => break,
        }
    }
    let mut out = String::new();
    if json {
        for f in &rows {
            writeln!(out, "{}", queries::failure_json(f))?;
        }
        return Ok(out);
    }
    if rows.is_empty() {
        writeln!(out, "no failures for {tenant} with these filters")?;
        return Ok(out);
    }
    writeln!(
        out,
        "{:<23}  {:>8}  {:<18}  {:<8}  {:<27}  MESSAGE",
        "TIME (UTC)", "POSITION", "INVOICE/CUSTOMER", "OUTCOME", "CAUSE"
    )?;
    for f in &rows {
        let subject = match (&f.invoice_id, &f.customer_id) {
            (Some(i), _) => i.clone(),
            (None, Some(c)) => format!("customer {c}"),
            _ => "-".into(),
        };
        writeln!(
            out,
            "{:<23}  {:>8}  {:<18}  {:<8}  {:<27}  {}",
            short_time(f.recorded_at_ms),
            f.position,
            subject,
            f.outcome,
            f.cause_kind,
            f.message
        )?;
    }
    writeln!(out, "{} failure(s), newest first", rows.len())?;
    Ok(out)
}

/// `bling-ledger projections status [--json]`.
pub async fn status(db: &Db, json: bool) -> Result<String> {
    let rows = super::status(db).await?;
    let mut out = String::new();
    if json {
        for r in &rows {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
        }
        return Ok(out);
    }
    writeln!(
        out,
        "{:<14}  {:>12}  {:>12}  {:>10}  UPDATED",
        "PROJECTION", "CHECKPOINT", "HEAD", "LAG"
    )?;
    for r in &rows {
        writeln!(
            out,
            "{:<14}  {:>12}  {:>12}  {:>10}  {}",
            r.name,
            r.checkpoint,
            r.head,
            r.lag,
            r.updated_at_ms
                .map(short_time)
                .unwrap_or_else(|| "never".into())
        )?;
    }
    Ok(out)
}

/// `bling-ledger projections rebuild [NAME]`, with a progress bar on stderr.
pub async fn rebuild(db: &Db, name: Option<&str>) -> Result<String> {
    let names: Vec<&'static str> = match name {
        Some(n) => vec![parse_name(n).map_err(|e| anyhow!(e))?],
        None => Vec::new(),
    };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})",
        )
        .map_err(|e| anyhow!("{e}"))?
        .progress_chars("=> "),
    );
    bar.set_message(format!("rebuilding {}", name.unwrap_or("all projections")));
    let runner = Projections::new(db.clone(), RunnerSettings::default());
    let report = runner
        .rebuild(&names, 5_000, |p| {
            bar.set_length(p.total.max(0) as u64);
            bar.set_position(p.done.max(0) as u64);
        })
        .await?;
    bar.finish_and_clear();
    Ok(format!(
        "rebuilt {} from {} events in {:.1} s ({:.0} events/s)\n",
        report.projections.join(", "),
        report.events,
        report.seconds,
        report.events_per_sec
    ))
}
