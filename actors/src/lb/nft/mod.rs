//! The nftables backend, for kernels without IPVS: direct routing with netdev `fwd`
//! (the VIP unchanged, the real server's MAC as destination, no conntrack involved),
//! NAT with `dnat` in prerouting. It keeps its own tables, sharded (see [`render`]), and
//! never touches any other table. Each `apply` is one transaction: the structure it
//! needs (a shard's skeleton, a shared chain) through nft, then the services' chains,
//! rules, entries and elements as one nf_tables netlink batch ([`netlink`], [`expr`]);
//! when that is refused, services are retried one by one so that one bad service does
//! not keep the others out.

pub mod dump;
pub mod exec;
pub mod expr;
pub mod flowlog;
pub mod flowlog_io;
pub mod maglev;
pub mod netlink;
pub mod render;
pub mod route;
pub mod slots;

use super::diff::Op;
use super::flows::{FlowInstall, FlowRecord};
use super::kernel::{KernelError, KernelLb};
use super::model::{Service, SvcKey, Table};
use render::{Cmd, Fingerprint, Slot, SvcState, TableId, Uses};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::process::{Command, Stdio};

/// Finds the egress device of a real server (and whether it is on-link).
pub type DeviceLookup = Box<dyn Fn(IpAddr) -> Result<(String, bool), KernelError> + Send>;

/// For one service: the indexes of its ops, and its state after them (None: deleted) or
/// why they cannot be applied.
type Planned = (Vec<usize>, Result<Option<SvcState>, KernelError>);

pub struct NftKernel {
    nft: exec::Nft,
    /// Services' chains, rules, entries and elements go to the kernel as netlink batches
    /// through this socket (None: not opened yet, or `HANODE_NFT_NETLINK=0`: everything
    /// through nft).
    batches: Option<netlink::NfNetlink>,
    use_batches: bool,
    /// What the kernel has, as of our last dump or successful apply.
    state: BTreeMap<SvcKey, SvcState>,
    /// The ids `state` uses, how many per shard, and what each table's services use of
    /// its shared chains: kept with `state`, so an apply costs O(its services).
    ids: BTreeSet<u32>,
    shard_used: BTreeMap<u32, usize>,
    uses: BTreeMap<TableId, Uses>,
    /// Commands that remove damaged or unreferenced parts found by the last dump.
    cleanup: Vec<String>,
    /// Shard tables found without services by the last dump (dropped unless used).
    idle: BTreeSet<TableId>,
    /// The shared chains of each table as the kernel has them.
    shared: BTreeMap<TableId, BTreeMap<String, Fingerprint>>,
    /// The devices each DR table's ingress chain hooks (by shard).
    ingress: BTreeMap<u32, BTreeSet<String>>,
    /// Our tables that have all their shared maps and hook chain (the skeleton is only
    /// sent to the others, keeping a small change small).
    present: BTreeSet<TableId>,
    /// Devices DR traffic also arrives on, besides those leading to real servers.
    extra_ingress: BTreeSet<String>,
    devices: BTreeMap<IpAddr, String>,
    lookup: DeviceLookup,
    clock: fn() -> u64,
    /// The id given last in each shard: new services take the next free one, so that an
    /// id (and the flows remembered under it) is not reused soon.
    last_id: BTreeMap<u32, u32>,
    /// The service of each id in `state` (the flow log names services by id).
    by_id: HashMap<u32, SvcKey>,
    /// Whether `state` was read from the kernel at least once.
    dumped: bool,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether `nft` can be run here and may change the ruleset (a checked, never committed
/// transaction: cheap even when our tables are large).
pub fn available() -> bool {
    Command::new("nft")
        .args(["-c", "add", "table", "inet", "hanode_probe"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Gives ids to new services: in the first shard with room (fewer than
/// [`render::SHARD_FILL`] services, else any free id), the next free one after the
/// shard's last given.
struct IdAlloc<'a> {
    used: &'a BTreeSet<u32>,
    shard_used: &'a BTreeMap<u32, usize>,
    last: &'a BTreeMap<u32, u32>,
    taken: BTreeSet<u32>,
}

impl Iterator for IdAlloc<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let count = |s: u32| {
            self.shard_used.get(&s).copied().unwrap_or(0) + self.taken.range(render::shard_ids(s)).count()
        };
        let capacity = |s: u32| render::shard_ids(s).count();
        let shard = (0..render::SHARDS)
            .find(|s| count(*s) < render::SHARD_FILL.min(capacity(*s)))
            .or_else(|| (0..render::SHARDS).find(|s| count(*s) < capacity(*s)))?;
        let ids = render::shard_ids(shard);
        let (lo, hi) = (*ids.start(), *ids.end());
        let after = self
            .last
            .get(&shard)
            .copied()
            .filter(|l| ids.contains(l))
            .unwrap_or(hi);
        let id = (after + 1..=hi)
            .chain(lo..=after)
            .find(|i| !self.used.contains(i) && !self.taken.contains(i))?;
        self.taken.insert(id);
        Some(id)
    }
}

impl NftKernel {
    pub fn new(extra_ingress: BTreeSet<String>) -> Self {
        let nft = exec::Nft::open();
        tracing::info!(runner = nft.kind(), "nftables backend");
        let use_batches = std::env::var("HANODE_NFT_NETLINK").map_or(true, |v| v != "0");
        NftKernel {
            nft,
            batches: None,
            use_batches,
            state: BTreeMap::new(),
            ids: BTreeSet::new(),
            shard_used: BTreeMap::new(),
            uses: BTreeMap::new(),
            cleanup: Vec::new(),
            idle: BTreeSet::new(),
            shared: BTreeMap::new(),
            ingress: BTreeMap::new(),
            present: BTreeSet::new(),
            extra_ingress,
            devices: BTreeMap::new(),
            lookup: Box::new(route::egress_device),
            clock: unix_now,
            last_id: BTreeMap::new(),
            by_id: HashMap::new(),
            dumped: false,
        }
    }

    pub fn with_lookup(mut self, lookup: DeviceLookup) -> Self {
        self.lookup = lookup;
        self
    }

    fn list(&mut self, table: &str) -> Result<Option<String>, KernelError> {
        self.nft
            .list_json(table)
            .map_err(|e| KernelError::other(format!("nft list table {table}: {e}")))
    }

    /// The netlink socket, opened on first use; None when netlink is not used.
    fn netlink(&mut self) -> Option<&mut netlink::NfNetlink> {
        if self.use_batches && self.batches.is_none() {
            match netlink::NfNetlink::open() {
                Ok(b) => self.batches = Some(b),
                Err(e) => {
                    tracing::warn!("nftables: netlink unavailable ({e}); using nft");
                    self.use_batches = false;
                }
            }
        }
        self.batches.as_mut()
    }

    /// Our tables that exist in the kernel (every shard): by a netlink dump, else from
    /// `nft -j list tables`.
    fn tables(&mut self) -> Result<Vec<TableId>, KernelError> {
        if let Some(nl) = self.netlink() {
            let tables = nl.tables();
            if tables.is_err() {
                self.batches = None;
            }
            return tables;
        }
        let json = self
            .nft
            .list_tables_json()
            .map_err(|e| KernelError::other(format!("nft list tables: {e}")))?;
        Ok(dump::tables_of_json(&json))
    }

    /// Reads one of our tables back from the kernel: by netlink dumps, else (netlink
    /// off) from `nft -j list table`. None if the table does not exist.
    fn read_table(&mut self, table: TableId) -> Result<Option<dump::Parsed>, KernelError> {
        if let Some(nl) = self.netlink() {
            let listing = nl.list(table.name());
            if listing.is_err() {
                self.batches = None;
            }
            return Ok(listing?.map(|l| dump::build(l, table)));
        }
        self.read_json(table)
    }

    /// Reads one of our tables from `nft -j list table`, again while the reading is torn.
    fn read_json(&mut self, table: TableId) -> Result<Option<dump::Parsed>, KernelError> {
        for _ in 0..5 {
            let Some(json) = self.list(table.name())? else {
                return Ok(None);
            };
            let listing = dump::listing_of_json(&json).map_err(KernelError::other)?;
            if !listing.torn() {
                return Ok(Some(dump::build(listing, table)));
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Err(KernelError::other(format!(
            "nft list table {table}: a set was rehashed during every listing"
        )))
    }

    /// Reads our tables by netlink and through nft's JSON and says where the two
    /// readings differ (a check of the netlink decoding against nft's own).
    pub fn compare_readings(&mut self) -> Result<Vec<String>, KernelError> {
        let mut differences = Vec::new();
        let by_netlink_tables = match self.netlink() {
            Some(nl) => nl.tables()?,
            None => return Err(KernelError::other("netlink is off")),
        };
        let json = self
            .nft
            .list_tables_json()
            .map_err(|e| KernelError::other(format!("nft list tables: {e}")))?;
        let tables = dump::tables_of_json(&json);
        if tables != by_netlink_tables {
            differences.push(format!("tables: netlink {by_netlink_tables:?}, json {tables:?}"));
        }
        for t in tables {
            let table = t.name();
            let by_netlink = match self.netlink() {
                Some(nl) => nl.list(table)?.map(|l| dump::build(l, t)),
                None => return Err(KernelError::other("netlink is off")),
            };
            let mut by_json = self.read_json(t)?;
            // nft's JSON (1.0.6) leaves a netdev chain's devices out: read them from
            // its text listing instead.
            if let Some(p) = by_json
                .as_mut()
                .filter(|p| !t.nat && p.objects.contains("ingress"))
            {
                p.ingress = ingress_devices_of_text(&list_chain_text(table, "ingress")?);
            }
            if by_netlink != by_json {
                differences.push(format!("{table}: netlink {by_netlink:?}\n  json {by_json:?}"));
            }
        }
        Ok(differences)
    }

    fn device(&mut self, addr: IpAddr) -> Result<String, KernelError> {
        if let Some(d) = self.devices.get(&addr) {
            return Ok(d.clone());
        }
        let (dev, onlink) = (self.lookup)(addr)?;
        if !onlink {
            return Err(KernelError::other(format!(
                "real server {addr} is behind a gateway: direct routing needs it on-link"
            )));
        }
        self.devices.insert(addr, dev.clone());
        Ok(dev)
    }

    /// The new state of each touched service, or why its ops cannot be applied.
    fn plan(&self, ops: &[Op]) -> BTreeMap<SvcKey, Planned> {
        let now = (self.clock)();
        let mut out: BTreeMap<SvcKey, Planned> = BTreeMap::new();
        let mut next_ids = IdAlloc {
            used: &self.ids,
            shard_used: &self.shard_used,
            last: &self.last_id,
            taken: BTreeSet::new(),
        };
        for (i, op) in ops.iter().enumerate() {
            let key = *op.service();
            let entry = out.entry(key).or_insert_with(|| {
                let cur = self.state.get(&key).cloned();
                (Vec::new(), Ok(cur))
            });
            entry.0.push(i);
            let Ok(cur) = &mut entry.1 else { continue };
            let r = step(cur, op, now, &mut next_ids);
            if let Err(e) = r {
                entry.1 = Err(e);
            }
        }
        // What nftables cannot express, and draining destinations whose flows are gone.
        for (key, (_, r)) in out.iter_mut() {
            if let Ok(Some(st)) = r {
                let specs: Vec<_> = st.active().iter().map(|(_, s)| *s).collect();
                if let Some(why) = render::unsupported(key, &st.spec, &specs) {
                    *r = Err(KernelError::other(format!("nftables backend: {why}")));
                    continue;
                }
                let timeout = u64::from(st.flow_timeout());
                // A service whose last destination goes stays in its table.
                st.empty_in_nat = st.is_nat();
                st.dests.retain(|_, s| match s.draining_since {
                    Some(t) => now.saturating_sub(t) <= timeout,
                    None => true,
                });
                st.choose_slots();
            }
        }
        out
    }

    /// What the services use of each table's shared chains once `services` (the new state
    /// of each touched service) apply, for the tables they touch.
    fn uses_after(&self, services: &[(SvcKey, Option<SvcState>)]) -> BTreeMap<TableId, Uses> {
        let mut uses: BTreeMap<TableId, Uses> = BTreeMap::new();
        let known = &self.uses;
        let touch = |uses: &mut BTreeMap<TableId, Uses>, t: TableId| -> Uses {
            uses.remove(&t)
                .unwrap_or_else(|| known.get(&t).cloned().unwrap_or_default())
        };
        for t in [TableId::DR, TableId::NAT]
            .into_iter()
            .chain(self.idle.iter().copied())
        {
            let u = touch(&mut uses, t);
            uses.insert(t, u);
        }
        for (k, new) in services {
            if let Some(old) = self.state.get(k) {
                let mut u = touch(&mut uses, old.table_id());
                u.remove(old);
                uses.insert(old.table_id(), u);
            }
            if let Some(new) = new {
                let mut u = touch(&mut uses, new.table_id());
                u.add(new);
                uses.insert(new.table_id(), u);
            }
        }
        uses
    }

    /// Counts every service of `state` again (after a dump).
    fn recount(&mut self) {
        (self.ids, self.shard_used, self.uses) = counts(&self.state);
        self.by_id = self.state.iter().map(|(k, st)| (st.id, *k)).collect();
    }

    /// The shared chains each touched table needs after this apply, where they differ
    /// from what the kernel has (tables dropped by the apply left out).
    fn shared_changes(&self, uses: &BTreeMap<TableId, Uses>) -> Vec<(TableId, String, Vec<String>)> {
        let mut out = Vec::new();
        for (t, u) in uses {
            if u.services == 0 && t.shard > 0 {
                continue;
            }
            let want = render::shared_chains_for(t.nat, &u.devices(), &u.prefixes());
            let have = self.shared.get(t);
            for (chain, rules) in want {
                if have.and_then(|h| h.get(&chain)) != Some(&render::fingerprint(&rules)) {
                    out.push((*t, chain, rules));
                }
            }
        }
        out
    }

    /// The shard tables the apply empties (dropped once it committed, flows and all;
    /// dropping a table that is not there is harmless).
    fn dropped(uses: &BTreeMap<TableId, Uses>) -> BTreeSet<TableId> {
        uses.iter()
            .filter(|(t, u)| t.shard > 0 && u.services == 0)
            .map(|(t, _)| *t)
            .collect()
    }

    /// The tables that need their skeleton (re)sent: created, or (DR) hooking other
    /// devices than `ingress`.
    fn skeletons(&self, uses: &BTreeMap<TableId, Uses>, ingress: &BTreeSet<String>) -> Vec<TableId> {
        let mut out = Vec::new();
        let live = uses
            .iter()
            .filter(|(t, u)| t.shard == 0 || u.services > 0)
            .map(|(t, _)| *t);
        let mut tables: BTreeSet<TableId> = live.collect();
        tables.extend(self.present.iter().filter(|t| !t.nat));
        for t in tables {
            if uses.get(&t).is_some_and(|u| u.services == 0 && t.shard > 0) {
                continue;
            }
            let hooks_other_devices = !t.nat && self.ingress.get(&t.shard) != Some(ingress);
            if !self.present.contains(&t) || hooks_other_devices {
                out.push(t);
            }
        }
        out
    }

    fn transaction(
        &self,
        services: &[(SvcKey, Option<SvcState>)],
        ingress: &BTreeSet<String>,
        skeletons: &[TableId],
        shared: &[(TableId, String, Vec<String>)],
    ) -> Result<Vec<Cmd>, KernelError> {
        let mut cmds = Vec::new();
        for t in skeletons {
            cmds.push(Cmd::Text(render::skeleton(*t, ingress)));
        }
        for c in &self.cleanup {
            cmds.push(Cmd::Text(format!("{c}\n")));
        }
        for (t, chain, rules) in shared {
            cmds.push(Cmd::Text(render::render_shared(*t, chain, rules)));
        }
        for (key, new) in services {
            let old = self.state.get(key);
            match new {
                None => {
                    if let Some(o) = old {
                        cmds.extend(render::delete_service(o));
                    }
                }
                Some(st) => cmds.extend(render::render_service(st, old).map_err(KernelError::other)?),
            }
        }
        Ok(cmds)
    }

    /// Sends one transaction. With netlink, the text steps (skeletons, repairs, shared
    /// chains, dropped shards: structure, idempotent and rarely changed) go first
    /// through nft, then everything else (services' chains, rules, entries and elements:
    /// O(the change), no nft cache, no parsing) as one netlink batch. Without, all of it
    /// as nft text in one transaction.
    fn send(&mut self, cmds: &[Cmd]) -> Result<(), KernelError> {
        if cmds.is_empty() {
            return Ok(());
        }
        if self.netlink().is_some() {
            let (batch, text): (Vec<&Cmd>, Vec<&Cmd>) = cmds.iter().partition(|c| c.is_netlink());
            if !text.is_empty() {
                run_nft(&mut self.nft, &render::script(text))?;
            }
            if let Some(b) = self.batches.as_mut() {
                let r = b.commit(&batch);
                if r.is_err() {
                    // A fresh socket next time: nothing stale is read.
                    self.batches = None;
                }
                return r;
            }
        }
        run_nft(&mut self.nft, &render::script(cmds))
    }

    /// The devices the ingress chains must hook: those of direct-routing destinations
    /// (in any shard, `uses` for the tables the apply touches) and the extra ones.
    fn ingress_for(&self, uses: &BTreeMap<TableId, Uses>) -> BTreeSet<String> {
        let mut set = self.extra_ingress.clone();
        let untouched = self.uses.iter().filter(|(t, _)| !uses.contains_key(t));
        for (t, u) in untouched.chain(uses.iter()) {
            if !t.nat {
                for devs in u.devices() {
                    set.extend(devs);
                }
            }
        }
        set
    }

    #[allow(clippy::too_many_arguments)]
    fn commit(
        &mut self,
        services: Vec<(SvcKey, Option<SvcState>)>,
        ingress: BTreeSet<String>,
        skeletons: Vec<TableId>,
        shared: Vec<(TableId, String, Vec<String>)>,
        dropped: &BTreeSet<TableId>,
        uses: BTreeMap<TableId, Uses>,
    ) {
        for (k, st) in services {
            let new_id = st.as_ref().map(|s| s.id);
            let old = match st {
                Some(s) => {
                    if self.state.get(&k).map(|o| o.id) != Some(s.id) {
                        self.last_id.insert(render::shard_of(s.id), s.id);
                    }
                    if self.ids.insert(s.id) {
                        *self.shard_used.entry(render::shard_of(s.id)).or_default() += 1;
                    }
                    self.by_id.insert(s.id, k);
                    self.state.insert(k, s)
                }
                None => self.state.remove(&k),
            };
            if let Some(o) = old.filter(|o| new_id != Some(o.id)) {
                if self.by_id.get(&o.id) == Some(&k) {
                    self.by_id.remove(&o.id);
                }
                if self.ids.remove(&o.id) {
                    let shard = render::shard_of(o.id);
                    if let Some(n) = self.shard_used.get_mut(&shard) {
                        *n -= 1;
                        if *n == 0 {
                            self.shard_used.remove(&shard);
                        }
                    }
                }
            }
        }
        for (t, u) in uses {
            if u.services == 0 && t.shard > 0 {
                self.uses.remove(&t);
            } else {
                self.uses.insert(t, u);
            }
        }
        // The counts kept per change equal a count from scratch (checked in debug builds:
        // the end-to-end tests run them against the kernel).
        #[cfg(debug_assertions)]
        {
            let (ids, shard_used, mut uses) = counts(&self.state);
            let mut kept = self.uses.clone();
            kept.retain(|_, u| u.services > 0);
            uses.retain(|_, u| u.services > 0);
            assert!(
                ids == self.ids && shard_used == self.shard_used && uses == kept,
                "nftables: per-change counts drifted"
            );
        }
        for t in skeletons {
            self.present.insert(t);
            if !t.nat {
                self.ingress.insert(t.shard, ingress.clone());
            }
        }
        for (t, chain, rules) in shared {
            self.shared
                .entry(t)
                .or_default()
                .insert(chain, render::fingerprint(&rules));
        }
        for t in dropped {
            self.present.remove(t);
            self.shared.remove(t);
            if !t.nat {
                self.ingress.remove(&t.shard);
            }
        }
        self.cleanup.clear();
    }

    /// Renders and runs `services` in one transaction.
    fn run(&mut self, services: &[(SvcKey, Option<SvcState>)]) -> Result<(), KernelError> {
        // Resolve devices first: the device sets and the ingress chain depend on them.
        let mut services = services.to_vec();
        for (_, st) in services.iter_mut() {
            if let Some(st) = st.as_mut().filter(|s| !s.is_nat()) {
                for (d, slot) in st.dests.iter_mut() {
                    if slot.dev.is_none() {
                        slot.dev = Some(self.device(d.addr)?);
                    }
                }
            }
        }
        let uses = self.uses_after(&services);
        let ingress = self.ingress_for(&uses);
        let skeletons = self.skeletons(&uses, &ingress);
        let shared = self.shared_changes(&uses);
        let mut dropped = Self::dropped(&uses);
        let cmds = self.transaction(&services, &ingress, &skeletons, &shared)?;
        if let Err(e) = self.send(&cmds) {
            // Perhaps the tables it needed went: the next attempt sends their skeletons
            // again (the others are left as they are known).
            for t in uses.keys().chain(skeletons.iter()) {
                self.present.remove(t);
            }
            return Err(e);
        }
        // Shards the apply emptied go only once it committed (their last services were
        // removed by it); one that cannot be dropped now is tried again with the next apply.
        if !dropped.is_empty() {
            if let Err(e) = run_nft(&mut self.nft, &render::drop_tables(dropped.iter().copied())) {
                tracing::warn!("nftables: dropping emptied shard tables: {e}");
                self.idle.extend(dropped.iter().copied());
                dropped.clear();
            }
        }
        let used: BTreeSet<TableId> = uses
            .iter()
            .filter(|(_, u)| u.services > 0)
            .map(|(t, _)| *t)
            .collect();
        self.commit(services, ingress, skeletons, shared, &dropped, uses);
        self.idle.retain(|t| !dropped.contains(t) && !used.contains(t));
        Ok(())
    }
}

impl NftKernel {
    /// Pins one flow (`replace`: replacing an element of the same key that goes
    /// elsewhere). False when it was not pinned: kept as it was, or the kernel refuses it
    /// (the map is gone: the service was removed).
    fn pin_flow(
        &mut self,
        table: &'static str,
        set: &str,
        e: render::FlowElem,
        replace: bool,
    ) -> Result<bool, KernelError> {
        let add = |replace| Cmd::Flows {
            table,
            set: set.to_string(),
            elems: vec![e.clone()],
            replace,
        };
        if self.send(&[add(false)]).is_ok() {
            return Ok(true);
        }
        Ok(replace && self.send(&[add(true)]).is_ok())
    }
}

/// `nft list chain T ingress`, for [`ingress_devices_of_text`].
fn list_chain_text(table: &str, chain: &str) -> Result<String, KernelError> {
    let mut args = vec!["list", "chain"];
    args.extend(table.split_whitespace());
    args.push(chain);
    let out = Command::new("nft")
        .args(&args)
        .output()
        .map_err(|e| KernelError::other(format!("nft: {e}")))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The devices of `... hook ingress devices = { a, b }` or `... device "a"`.
fn ingress_devices_of_text(text: &str) -> BTreeSet<String> {
    let clean = |d: &str| d.trim().trim_matches('"').to_string();
    if let Some(rest) = text.split_once("devices = {").map(|x| x.1) {
        let list = rest.split('}').next().unwrap_or("");
        return list.split(',').map(clean).filter(|d| !d.is_empty()).collect();
    }
    text.split_once("device ")
        .and_then(|x| x.1.split_whitespace().next())
        .map(|d| BTreeSet::from([clean(d)]))
        .unwrap_or_default()
}

/// The ids `state` uses, how many per shard, and what its services use of each table's
/// shared chains.
fn counts(
    state: &BTreeMap<SvcKey, SvcState>,
) -> (BTreeSet<u32>, BTreeMap<u32, usize>, BTreeMap<TableId, Uses>) {
    let mut uses: BTreeMap<TableId, Uses> = BTreeMap::new();
    let mut per_shard: BTreeMap<u32, usize> = BTreeMap::new();
    for st in state.values() {
        uses.entry(st.table_id()).or_default().add(st);
        *per_shard.entry(render::shard_of(st.id)).or_default() += 1;
    }
    (state.values().map(|s| s.id).collect(), per_shard, uses)
}

/// Applies one op to a service's rendered state.
fn step(
    cur: &mut Option<SvcState>,
    op: &Op,
    now: u64,
    next_ids: &mut impl Iterator<Item = u32>,
) -> Result<(), KernelError> {
    const EEXIST: i32 = 17;
    const ESRCH: i32 = 3;
    const ENOENT: i32 = 2;
    let ctx = op.to_string();
    match op {
        Op::AddService(k, spec) => {
            if cur.is_some() {
                return Err(KernelError::errno(EEXIST, &ctx));
            }
            let id = next_ids.next().ok_or_else(|| {
                KernelError::other(format!(
                    "{ctx}: the nftables backend holds at most {} services",
                    render::MAX_SERVICES
                ))
            })?;
            *cur = Some(SvcState {
                key: *k,
                id,
                spec: spec.clone(),
                dests: Default::default(),
                slots: 0,
                empty_in_nat: false,
            });
        }
        Op::EditService(_, spec) => {
            cur.as_mut().ok_or_else(|| KernelError::errno(ESRCH, &ctx))?.spec = spec.clone();
        }
        Op::DelService(_) => {
            cur.take().ok_or_else(|| KernelError::errno(ESRCH, &ctx))?;
        }
        Op::AddDest(_, d, spec) | Op::EditDest(_, d, spec) => {
            let st = cur.as_mut().ok_or_else(|| KernelError::errno(ESRCH, &ctx))?;
            let live = st.dests.get(d).filter(|s| s.draining_since.is_none());
            match (op, live) {
                (Op::AddDest(..), Some(_)) => return Err(KernelError::errno(EEXIST, &ctx)),
                (Op::EditDest(..), None) => return Err(KernelError::errno(ENOENT, &ctx)),
                _ => {}
            }
            // A draining destination that comes back keeps its mark (and its flows).
            let (mark, dev) = match st.dests.get(d) {
                Some(s) => (s.mark, s.dev.clone()),
                None => {
                    let used: BTreeSet<u32> = st.dests.values().map(|s| s.mark).collect();
                    let free = (1..=render::MAX_DESTS).find(|m| !used.contains(m));
                    let mark = free.ok_or_else(|| {
                        KernelError::other(format!(
                            "{ctx}: the nftables backend holds at most {} destinations per service",
                            render::MAX_DESTS
                        ))
                    })?;
                    (mark, None)
                }
            };
            st.dests.insert(
                *d,
                Slot {
                    mark,
                    spec: *spec,
                    draining_since: None,
                    dev,
                },
            );
        }
        Op::DelDest(_, d) => {
            let st = cur.as_mut().ok_or_else(|| KernelError::errno(ESRCH, &ctx))?;
            let slot = st
                .dests
                .get_mut(d)
                .filter(|s| s.draining_since.is_none())
                .ok_or_else(|| KernelError::errno(ENOENT, &ctx))?;
            slot.draining_since = Some(now);
        }
    }
    Ok(())
}

fn run_nft(nft: &mut exec::Nft, script: &str) -> Result<(), KernelError> {
    nft.run(script)
        .map_err(|e| KernelError::other(format!("nft refused: {e}")))
}

impl KernelLb for NftKernel {
    fn backend(&self) -> &'static str {
        "nftables"
    }

    fn syncs_flows(&self) -> bool {
        true
    }

    fn describe_flows(&self, logged: &[flowlog::LoggedFlow]) -> Vec<FlowRecord> {
        logged
            .iter()
            .filter_map(|f| {
                let service = *self.by_id.get(&(f.mark >> 16))?;
                let d = f.mark & render::MAX_DESTS;
                let st = self.state.get(&service)?;
                if st.affinity() == render::Affinity::None {
                    return None;
                }
                let (dest, _) = st.dests.iter().find(|(_, s)| s.mark == d)?;
                Some(FlowRecord {
                    service,
                    client: f.client,
                    dest: *dest,
                })
            })
            .collect()
    }

    fn pinned_flows(&mut self) -> Result<Vec<FlowRecord>, KernelError> {
        if !self.dumped {
            self.dump()?;
        }
        let tables: BTreeSet<TableId> = self
            .state
            .values()
            .map(SvcState::table_id)
            .filter(|t| !t.nat)
            .collect();
        let mut logged = Vec::new();
        for t in tables {
            for set in render::FLOW_MAPS {
                let elems = match self.netlink() {
                    Some(nl) => nl.flow_elements(t.name(), set),
                    None => return Err(KernelError::other("nftables: reading flows needs netlink")),
                };
                let elems = match elems {
                    Ok(e) => e,
                    Err(e) => {
                        self.batches = None;
                        return Err(e);
                    }
                };
                for (key, mark) in elems {
                    match render::flow_key_of(set, &key) {
                        Some((client, tag)) if tag == mark & 0xffff_0000 => {
                            logged.push(flowlog::LoggedFlow { client, mark })
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(self.describe_flows(&logged))
    }

    fn install_flows(&mut self, flows: &[FlowRecord], replace: bool) -> Result<FlowInstall, KernelError> {
        // A director that just started has not read its tables yet: their services are
        // what the flows name.
        if !self.dumped {
            self.dump()?;
        }
        let mut by_map: BTreeMap<(TableId, String), Vec<render::FlowElem>> = BTreeMap::new();
        let mut report = FlowInstall::default();
        for f in flows {
            match self
                .state
                .get(&f.service)
                .and_then(|st| render::flow_elem(st, f.client, &f.dest))
            {
                Some((table, set, elem)) => by_map.entry((table, set)).or_default().push(elem),
                None => report.skipped += 1,
            }
        }
        for ((table, set), elems) in by_map {
            let n = elems.len();
            let cmd = Cmd::Flows {
                table: table.name(),
                set,
                elems,
                replace: false,
            };
            if self.send(std::slice::from_ref(&cmd)).is_err() {
                // One flow the kernel pins to another server (it was scheduled here
                // meanwhile) refuses the batch: each flow alone, replacing it.
                let Cmd::Flows {
                    table, set, elems, ..
                } = cmd
                else {
                    continue;
                };
                for e in elems {
                    if self.pin_flow(table, &set, e, replace)? {
                        report.installed += 1;
                    } else {
                        report.skipped += 1;
                    }
                }
                continue;
            }
            report.installed += n;
        }
        Ok(report)
    }

    fn dump(&mut self) -> Result<Table, KernelError> {
        let mut state: BTreeMap<SvcKey, SvcState> = BTreeMap::new();
        let mut cleanup = Vec::new();
        let mut shared = BTreeMap::new();
        let mut ingress = BTreeMap::new();
        let mut present = BTreeSet::new();
        let mut idle = BTreeSet::new();
        for t in self.tables()? {
            let Some(p) = self.read_table(t)? else {
                continue;
            };
            if render::skeleton_objects(t.nat)
                .iter()
                .all(|o| p.objects.contains(*o))
            {
                present.insert(t);
            }
            if p.services.is_empty() && t.shard > 0 {
                idle.insert(t);
            }
            for (k, st) in p.services {
                match state.entry(k) {
                    // The same service in two tables (a move cut short): keep one.
                    std::collections::btree_map::Entry::Occupied(_) => {
                        cleanup.push(render::script(&render::delete_service_in(&st, t)));
                    }
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(st);
                    }
                }
            }
            cleanup.extend(p.cleanup);
            shared.insert(t, p.shared);
            if !t.nat {
                ingress.insert(t.shard, p.ingress);
            }
        }
        self.last_id.clear();
        for st in state.values() {
            let last = self.last_id.entry(render::shard_of(st.id)).or_default();
            *last = (*last).max(st.id);
        }
        self.state = state;
        self.dumped = true;
        self.recount();
        self.cleanup = cleanup;
        self.idle = idle;
        self.shared = shared;
        self.ingress = ingress;
        self.present = present;
        Ok(self
            .state
            .iter()
            .map(|(k, st)| {
                (
                    *k,
                    Service {
                        spec: st.spec.clone(),
                        dests: st.active().into_iter().collect(),
                    },
                )
            })
            .collect())
    }

    /// Removes all of our tables (flows included).
    fn remove_all(&mut self) -> Result<(), KernelError> {
        let mut tables: BTreeSet<TableId> = self.tables().unwrap_or_default().into_iter().collect();
        tables.extend(self.present.iter().copied());
        tables.extend([TableId::DR, TableId::NAT]);
        self.state.clear();
        self.recount();
        self.cleanup.clear();
        self.idle.clear();
        self.shared.clear();
        self.ingress.clear();
        self.present.clear();
        run_nft(&mut self.nft, &render::drop_tables(tables))
    }

    fn apply(&mut self, ops: &[Op]) -> Vec<Result<(), KernelError>> {
        let mut results: Vec<Result<(), KernelError>> = vec![Ok(()); ops.len()];
        let mut good = Vec::new();
        let mut members = BTreeMap::new();
        for (key, (idx, r)) in self.plan(ops) {
            match r {
                Ok(st) => {
                    members.insert(key, idx);
                    good.push((key, st));
                }
                Err(e) => {
                    for i in idx {
                        results[i] = Err(e.clone());
                    }
                }
            }
        }
        let settled = self.present.contains(&TableId::DR) && self.present.contains(&TableId::NAT);
        if good.is_empty() && settled && self.cleanup.is_empty() && self.idle.is_empty() {
            return results;
        }
        if let Err(e) = self.run(&good) {
            if good.len() <= 1 {
                for (key, _) in &good {
                    for &i in &members[key] {
                        results[i] = Err(e.clone());
                    }
                }
                return results;
            }
            // Isolate the refused service(s).
            for svc in good {
                let key = svc.0;
                if let Err(e) = self.run(std::slice::from_ref(&svc)) {
                    for &i in &members[&key] {
                        results[i] = Err(e.clone());
                    }
                }
            }
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_services_fill_the_first_shard_with_room_and_rotate_within_it() {
        let used: BTreeSet<u32> = (1..=890).collect();
        let shard_used = BTreeMap::from([(0, 890)]);
        let last = BTreeMap::from([(0, 890)]);
        let mut ids = IdAlloc {
            used: &used,
            shard_used: &shard_used,
            last: &last,
            taken: BTreeSet::new(),
        };
        // Shard 0 takes six more (up to 896), then shard 1 from its start.
        let got: Vec<u32> = ids.by_ref().take(8).collect();
        assert_eq!(got, [891, 892, 893, 894, 895, 896, 1025, 1026]);
        assert_eq!(render::shard_of(1025), 1);
        // A shard's ids rotate: after the last given, the next free one, wrapping.
        let used: BTreeSet<u32> = [1, 2, 1024].into_iter().collect();
        let shard_used = BTreeMap::from([(0, 3)]);
        let last = BTreeMap::from([(0, 1023)]);
        let mut ids = IdAlloc {
            used: &used,
            shard_used: &shard_used,
            last: &last,
            taken: BTreeSet::new(),
        };
        assert_eq!(ids.next(), Some(3), "1024 is used: wraps to the first free");
        // Every id used: none left.
        let used: BTreeSet<u32> = (1..=render::MAX_SERVICES).collect();
        let shard_used: BTreeMap<u32, usize> = (0..render::SHARDS)
            .map(|s| (s, render::shard_ids(s).count()))
            .collect();
        let last = BTreeMap::new();
        let mut ids = IdAlloc {
            used: &used,
            shard_used: &shard_used,
            last: &last,
            taken: BTreeSet::new(),
        };
        assert_eq!(ids.next(), None);
    }

    #[test]
    fn ingress_devices_are_read_from_nft_text_in_both_forms() {
        let many = "chain ingress {\n type filter hook ingress devices = { ens33, ens34 } priority -500; policy accept;\n}";
        assert_eq!(
            ingress_devices_of_text(many),
            BTreeSet::from(["ens33".to_string(), "ens34".to_string()])
        );
        let one = "type filter hook ingress device \"ens33\" priority -400; policy accept;";
        assert_eq!(
            ingress_devices_of_text(one),
            BTreeSet::from(["ens33".to_string()])
        );
        assert!(ingress_devices_of_text("chain ingress {}").is_empty());
    }
}
