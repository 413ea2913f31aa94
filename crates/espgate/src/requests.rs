//! Control requests about a running node's SAs, rules, counters and pair:
//! what `sa_list`, `sa_add`, `sa_del`, `sa_rekey`, `spi_alloc`,
//! `sa_query`, `spd_put`, `spd_del`, `stats`, `peer` and the Prometheus
//! scrape do. A request that cannot be carried out changes
//! nothing and gets `{"ok":false,"error":..}`.

use std::path::Path;
use std::time::Duration;

use espgate_control::answer::{
    Done, MetricsText, Rules, SaAdded, SaExport, SaQueried, SaRekeyed, SpiAllocated, carried_out,
    refusal,
};
use espgate_control::request::Request;
use espgate_dataplane::RunningNode;
use espgate_dataplane::spd::SpdRule;
use serde_json::Value;

use crate::{metrics, views};

/// How long an inbound SA replaced by a rekey keeps decrypting when the
/// request does not say (strongSwan and VPP keep the old inbound SA until
/// the peer has switched; five seconds covers packets in flight and
/// queued at the far end).
pub const DEFAULT_GRACE_MS: u64 = 5000;

/// Answers `req` about `node`.
pub fn answer(req: Request, node: &mut RunningNode) -> Value {
    match run(req, node) {
        Ok(v) => v,
        Err(e) => refusal(e),
    }
}

fn run(req: Request, node: &mut RunningNode) -> Result<Value, String> {
    let from_socket = "<control socket>";
    Ok(match req {
        Request::SaList {} => {
            let workers = node.snapshot().map_err(|e| e.to_string())?;
            let mirror = node.mirror_views().map_err(|e| e.to_string())?;
            carried_out(&views::sa_list(node, &workers, mirror))
        }
        Request::Stats {} => carried_out(&views::stats(
            &node.snapshot().map_err(|e| e.to_string())?,
            node.commands_pending(),
        )),
        Request::Peer {} => carried_out(&views::peer(node)),
        Request::SaExport {} => {
            let replaced: Vec<(u32, espgate_esp::Direction)> =
                node.retiring().map(|(spi, dir, _)| (spi, dir)).collect();
            let cfg = node.config();
            let sas: Vec<_> = cfg
                .sas
                .iter()
                .filter(|e| !replaced.contains(&(e.sa.spi, e.sa.direction)))
                .cloned()
                .collect();
            carried_out(&SaExport {
                yaml: espgate_control::export::sas_and_rules(
                    &sas,
                    &cfg.spd,
                    cfg.mirror.as_ref().map(|m| m.protocol.node),
                ),
            })
        }
        Request::Metrics => {
            let workers = node.snapshot().map_err(|e| e.to_string())?;
            carried_out(&MetricsText {
                text: metrics::render(node, &workers),
            })
        }
        Request::SaAdd {
            yaml,
            position,
            home_by_address,
        } => {
            let mut update =
                espgate_control::parse_sa_update(&yaml, from_socket, Path::new("."), node.config())
                    .map_err(|e| e.to_string())?;
            if home_by_address {
                update.home_by_address(node.config())?;
            }
            let (sas, rules) = (update.sas.len(), update.spd.len());
            node.add_sas(update.sas, update.spd, position)
                .map_err(|e| e.to_string())?;
            carried_out(&SaAdded { sas, rules })
        }
        Request::SaDel { spi, direction } => {
            node.delete_sa(spi.value()?, direction.into())
                .map_err(|e| e.to_string())?;
            carried_out(&Done {})
        }
        Request::SaRekey {
            spi,
            direction,
            yaml,
            grace_ms,
        } => {
            let file = espgate_control::parse_sa(&yaml, from_socket, Path::new("."))
                .map_err(|e| e.to_string())?;
            let new = file
                .for_direction(direction.into())
                .map_err(|e| e.to_string())?;
            let new_spi = new.spi;
            let grace = Duration::from_millis(grace_ms.unwrap_or(DEFAULT_GRACE_MS));
            node.rekey(spi.value()?, direction.into(), new, grace)
                .map_err(|e| e.to_string())?;
            carried_out(&SaRekeyed {
                new_spi,
                grace_ms: grace.as_millis() as u64,
            })
        }
        Request::SpiAlloc { spi: None } => carried_out(&SpiAllocated {
            spi: node.allocate_spi().map_err(|e| e.to_string())?,
        }),
        Request::SpiAlloc { spi: Some(spi) } => {
            let spi = spi.value()?;
            node.reserve_spi(spi).map_err(|e| e.to_string())?;
            carried_out(&SpiAllocated { spi })
        }
        Request::SaQuery { spi, direction } => {
            let (spi, direction) = (spi.value()?, direction.into());
            let workers = node.snapshot().map_err(|e| e.to_string())?;
            let Some(sa) = workers
                .iter()
                .flat_map(|w| &w.sas)
                .find(|s| s.spi == spi && s.direction == direction)
            else {
                return Err(format!("no {direction} SA {spi:#x}"));
            };
            carried_out(&SaQueried {
                packets: sa.counters.packets,
                bytes: sa.counters.bytes,
            })
        }
        Request::SpdPut { yaml } => {
            let rules = rules_of(&yaml, node)?;
            let n = rules.len();
            node.put_rules(rules).map_err(|e| e.to_string())?;
            carried_out(&Rules { rules: n })
        }
        Request::SpdDel { yaml } => {
            let rules = rules_of(&yaml, node)?;
            node.delete_rules(&rules).map_err(|e| e.to_string())?;
            carried_out(&Rules { rules: rules.len() })
        }
        other => return Err(format!("{other:?} is not a request about SAs or counters")),
    })
}

/// The `spd` rules of a request's YAML (no `sas`), read as a node file
/// reads them.
fn rules_of(yaml: &str, node: &RunningNode) -> Result<Vec<SpdRule>, String> {
    let update =
        espgate_control::parse_sa_update(yaml, "<control socket>", Path::new("."), node.config())
            .map_err(|e| e.to_string())?;
    if !update.sas.is_empty() {
        return Err("spd_put and spd_del take rules only (`spd:`): sa_add adds SAs".into());
    }
    Ok(update.spd)
}
