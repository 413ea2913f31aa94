//! Control requests about a running node's SAs, rules, counters and pair:
//! what `sa_list`, `sa_add`, `sa_del`, `sa_rekey`, `spi_alloc`,
//! `sa_query`, `spd_put`, `spd_del`, `stats`, `peer` and the Prometheus
//! scrape do. A request that cannot be carried out changes
//! nothing and gets `{"ok":false,"error":..}`.

use std::path::Path;
use std::time::Duration;

use espgate_control::answer::{
    Done, MetricsText, Rules, SaAdded, SaExport, SaQueried, SaRekeyed, SpiAllocated, carried_out,
    passing_refusal, refusal,
};
use espgate_control::request::Request;
use espgate_dataplane::spd::SpdRule;
use espgate_dataplane::{NodeError, RunningNode};
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
        Err(Refused {
            why,
            passing: false,
        }) => refusal(why),
        Err(Refused { why, passing: true }) => passing_refusal(why),
    }
}

/// Why a request was not carried out, and whether the reason passes (the
/// workers busy): the same request may be carried out later.
struct Refused {
    why: String,
    passing: bool,
}

impl From<String> for Refused {
    fn from(why: String) -> Self {
        Refused {
            why,
            passing: false,
        }
    }
}

impl From<espgate_control::ConfigError> for Refused {
    fn from(e: espgate_control::ConfigError) -> Self {
        e.to_string().into()
    }
}

impl From<NodeError> for Refused {
    fn from(e: NodeError) -> Self {
        Refused {
            passing: matches!(e, NodeError::Busy(_)),
            why: e.to_string(),
        }
    }
}

fn run(req: Request, node: &mut RunningNode) -> Result<Value, Refused> {
    let from_socket = "<control socket>";
    Ok(match req {
        Request::SaList {} => {
            let workers = node.snapshot()?;
            let mirror = node.mirror_views()?;
            carried_out(&views::sa_list(node, &workers, mirror))
        }
        Request::Stats {} => carried_out(&views::stats(&node.snapshot()?, node.commands_pending())),
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
            let workers = node.snapshot()?;
            carried_out(&MetricsText {
                text: metrics::render(node, &workers),
            })
        }
        Request::SaAdd {
            yaml,
            position,
            home_by_address,
        } => {
            let mut update = espgate_control::parse_sa_update(
                &yaml,
                from_socket,
                Path::new("."),
                node.config(),
            )?;
            if home_by_address {
                update.home_by_address(node.config())?;
            }
            let (sas, rules) = (update.sas.len(), update.spd.len());
            node.add_sas(update.sas, update.spd, position)?;
            carried_out(&SaAdded { sas, rules })
        }
        Request::SaDel { spi, direction } => {
            node.delete_sa(spi.value()?, direction.into())?;
            carried_out(&Done {})
        }
        Request::SaRekey {
            spi,
            direction,
            yaml,
            grace_ms,
        } => {
            let file = espgate_control::parse_sa(&yaml, from_socket, Path::new("."))?;
            let new = file.for_direction(direction.into())?;
            let new_spi = new.spi;
            let grace = Duration::from_millis(grace_ms.unwrap_or(DEFAULT_GRACE_MS));
            node.rekey(spi.value()?, direction.into(), new, grace)?;
            carried_out(&SaRekeyed {
                new_spi,
                grace_ms: grace.as_millis() as u64,
            })
        }
        Request::SpiAlloc { spi: None } => carried_out(&SpiAllocated {
            spi: node.allocate_spi()?,
        }),
        Request::SpiAlloc { spi: Some(spi) } => {
            let spi = spi.value()?;
            node.reserve_spi(spi)?;
            carried_out(&SpiAllocated { spi })
        }
        Request::SaQuery { spi, direction } => {
            let (spi, direction) = (spi.value()?, direction.into());
            let workers = node.snapshot()?;
            let Some(sa) = workers
                .iter()
                .flat_map(|w| &w.sas)
                .find(|s| s.spi == spi && s.direction == direction)
            else {
                return Err(format!("no {direction} SA {spi:#x}").into());
            };
            carried_out(&SaQueried {
                packets: sa.counters.packets,
                bytes: sa.counters.bytes,
            })
        }
        Request::SpdPut { yaml } => {
            let rules = rules_of(&yaml, node)?;
            let n = rules.len();
            node.put_rules(rules)?;
            carried_out(&Rules { rules: n })
        }
        Request::SpdDel { yaml } => {
            let rules = rules_of(&yaml, node)?;
            node.delete_rules(&rules)?;
            carried_out(&Rules { rules: rules.len() })
        }
        other => return Err(format!("{other:?} is not a request about SAs or counters").into()),
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
