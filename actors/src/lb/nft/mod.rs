//! The nftables backend, for kernels without IPVS: direct routing with netdev `fwd`
//! (the VIP unchanged, the real server's MAC as destination, no conntrack involved),
//! NAT with `dnat` in prerouting. It keeps its own two tables (see [`render`]) and
//! never touches any other table. Each `apply` is one `nft -f` transaction; when that
//! transaction is refused, services are retried one by one so that one bad service
//! does not keep the others out.

pub mod dump;
pub mod exec;
pub mod expr;
pub mod netlink;
pub mod render;
pub mod route;
pub mod slots;

use super::diff::Op;
use super::kernel::{KernelError, KernelLb};
use super::model::{Service, SvcKey, Table};
use render::{Cmd, Fingerprint, Slot, SvcState, Uses};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::process::{Command, Stdio};

/// Finds the egress device of a real server (and whether it is on-link).
pub type DeviceLookup = Box<dyn Fn(IpAddr) -> Result<(String, bool), KernelError> + Send>;

/// For one service: the indexes of its ops, and its state after them (None: deleted) or
/// why they cannot be applied.
type Planned = (Vec<usize>, Result<Option<SvcState>, KernelError>);

pub struct NftKernel {
    nft: exec::Nft,
    /// Element-only changes go to the kernel as netlink batches through this socket
    /// (None: not opened yet, or `HANODE_NFT_NETLINK=0`: everything through nft).
    batches: Option<netlink::NfNetlink>,
    use_batches: bool,
    /// What the kernel has, as of our last dump or successful apply.
    state: BTreeMap<SvcKey, SvcState>,
    /// The ids `state` uses, and what its services use of the shared chains (index: is
    /// NAT): kept with `state`, so an apply costs O(its services).
    ids: BTreeSet<u32>,
    uses: [Uses; 2],
    /// Commands that remove damaged or unreferenced parts found by the last dump.
    cleanup: Vec<String>,
    /// The shared chains of each table (index: is NAT) as the kernel has them.
    shared: [BTreeMap<String, Fingerprint>; 2],
    ingress: Option<BTreeSet<String>>,
    /// Whether both tables have all their shared maps and hook chains (the skeleton is
    /// only sent when not, keeping a small change small).
    tables_ok: bool,
    /// Devices DR traffic also arrives on, besides those leading to real servers.
    extra_ingress: BTreeSet<String>,
    devices: BTreeMap<IpAddr, String>,
    lookup: DeviceLookup,
    clock: fn() -> u64,
    /// The id given last: new services take the next free one, so that an id (and the
    /// flows remembered under it) is not reused soon.
    last_id: u32,
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
            uses: Default::default(),
            cleanup: Vec::new(),
            shared: Default::default(),
            ingress: None,
            tables_ok: false,
            extra_ingress,
            devices: BTreeMap::new(),
            lookup: Box::new(route::egress_device),
            clock: unix_now,
            last_id: 0,
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

    /// Reads one of our tables back from the kernel: by netlink dumps, else (netlink
    /// off) from `nft -j list table`. None if the table does not exist.
    fn read_table(&mut self, nat: bool) -> Result<Option<dump::Parsed>, KernelError> {
        let table = render::table_name(nat);
        if let Some(nl) = self.netlink() {
            let listing = nl.list(table);
            if listing.is_err() {
                self.batches = None;
            }
            return Ok(listing?.map(|l| dump::build(l, nat)));
        }
        match self.list(table)? {
            None => Ok(None),
            Some(json) => dump::parse(&json, nat).map(Some).map_err(KernelError::other),
        }
    }

    /// Reads both tables by netlink and through nft's JSON and says where the two
    /// readings differ (a check of the netlink decoding against nft's own).
    pub fn compare_readings(&mut self) -> Result<Vec<String>, KernelError> {
        let mut differences = Vec::new();
        for nat in [false, true] {
            let table = render::table_name(nat);
            let by_netlink = match self.netlink() {
                Some(nl) => nl.list(table)?.map(|l| dump::build(l, nat)),
                None => return Err(KernelError::other("netlink is off")),
            };
            let mut by_json = match self.list(table)? {
                None => None,
                Some(json) => Some(dump::parse(&json, nat).map_err(KernelError::other)?),
            };
            // nft's JSON (1.0.6) leaves a netdev chain's devices out: read them from
            // its text listing instead.
            if let Some(p) = by_json.as_mut().filter(|p| !nat && p.objects.contains("ingress")) {
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
        let used = &self.ids;
        let start = self.last_id.min(render::MAX_SERVICES);
        let mut next_ids = (start + 1..=render::MAX_SERVICES)
            .chain(1..=start)
            .filter(|i| !used.contains(i));
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
    /// of each touched service) apply.
    fn uses_after(&self, services: &[(SvcKey, Option<SvcState>)]) -> [Uses; 2] {
        let mut uses = self.uses.clone();
        for (k, new) in services {
            if let Some(old) = self.state.get(k) {
                uses[usize::from(old.is_nat())].remove(old);
            }
            if let Some(new) = new {
                uses[usize::from(new.is_nat())].add(new);
            }
        }
        uses
    }

    /// Counts every service of `state` again (after a dump).
    fn recount(&mut self) {
        (self.ids, self.uses) = counts(&self.state);
    }

    /// The shared chains each table needs after this apply, where they differ from what
    /// the kernel has.
    fn shared_changes(&self, uses: &[Uses; 2]) -> Vec<(bool, String, Vec<String>)> {
        let mut out = Vec::new();
        for nat in [false, true] {
            let u = &uses[usize::from(nat)];
            let want = render::shared_chains_for(nat, &u.devices(), &u.prefixes());
            for (chain, rules) in want {
                let have = self.shared[usize::from(nat)].get(&chain);
                if have != Some(&render::fingerprint(&rules)) {
                    out.push((nat, chain, rules));
                }
            }
        }
        out
    }

    fn transaction(
        &self,
        services: &[(SvcKey, Option<SvcState>)],
        ingress: &BTreeSet<String>,
        shared: &[(bool, String, Vec<String>)],
    ) -> Result<Vec<Cmd>, KernelError> {
        let recreate = self.ingress.as_ref() != Some(ingress);
        let mut cmds = Vec::new();
        if recreate || !self.tables_ok {
            cmds.push(Cmd::Text(render::skeleton(Some(ingress), recreate)));
        }
        for c in &self.cleanup {
            cmds.push(Cmd::Text(format!("{c}\n")));
        }
        for (nat, chain, rules) in shared {
            cmds.push(Cmd::Text(render::render_shared(*nat, chain, rules)));
        }
        for (key, new) in services {
            let old = self.state.get(key);
            match new {
                None => {
                    if let Some(o) = old {
                        cmds.extend(render::delete_service(o));
                    }
                }
                Some(st) => {
                    cmds.extend(render::render_service(st, old).map_err(KernelError::other)?);
                }
            }
        }
        Ok(cmds)
    }

    /// Sends one transaction. With netlink, the text steps (the skeleton, repairs, the
    /// shared chains: idempotent structure, rarely changed) go first through nft, then
    /// everything else (services' chains, rules, entries and elements: O(the change),
    /// no nft cache, no parsing) as one netlink batch. Without, all of it as nft text.
    fn send(&mut self, cmds: &[Cmd]) -> Result<(), KernelError> {
        if cmds.is_empty() {
            return Ok(());
        }
        if self.netlink().is_some() {
            let (batch, text): (Vec<Cmd>, Vec<Cmd>) = cmds.iter().cloned().partition(Cmd::is_netlink);
            if !text.is_empty() {
                run_nft(&mut self.nft, &render::script(&text))?;
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

    /// The devices the ingress chain must hook: those of direct-routing destinations.
    fn ingress_for(&self, uses: &[Uses; 2]) -> BTreeSet<String> {
        let mut set = self.extra_ingress.clone();
        for devs in uses[0].devices() {
            set.extend(devs);
        }
        set
    }

    fn commit(
        &mut self,
        services: &[(SvcKey, Option<SvcState>)],
        ingress: BTreeSet<String>,
        shared: Vec<(bool, String, Vec<String>)>,
        uses: [Uses; 2],
    ) {
        for (k, st) in services {
            let old = match st {
                Some(s) => {
                    if self.state.get(k).map(|o| o.id) != Some(s.id) {
                        self.last_id = s.id;
                    }
                    self.ids.insert(s.id);
                    self.state.insert(*k, s.clone())
                }
                None => self.state.remove(k),
            };
            if let Some(o) = old.filter(|o| st.as_ref().map(|s| s.id) != Some(o.id)) {
                self.ids.remove(&o.id);
            }
        }
        self.uses = uses;
        // The counts kept per change equal a count from scratch (checked in debug builds:
        // the end-to-end tests run them against the kernel).
        #[cfg(debug_assertions)]
        {
            let (ids, uses) = counts(&self.state);
            assert!(
                ids == self.ids && uses == self.uses,
                "nftables: per-change counts drifted"
            );
        }
        for (nat, chain, rules) in shared {
            self.shared[usize::from(nat)].insert(chain, render::fingerprint(&rules));
        }
        self.cleanup.clear();
        self.ingress = Some(ingress);
        self.tables_ok = true;
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
        let shared = self.shared_changes(&uses);
        let cmds = self.transaction(&services, &ingress, &shared)?;
        if let Err(e) = self.send(&cmds) {
            // Perhaps our tables went: the next attempt sends the skeleton again.
            self.tables_ok = false;
            return Err(e);
        }
        self.commit(&services, ingress, shared, uses);
        Ok(())
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

/// The ids `state` uses and what its services use of each table's shared chains.
fn counts(state: &BTreeMap<SvcKey, SvcState>) -> (BTreeSet<u32>, [Uses; 2]) {
    let mut uses: [Uses; 2] = Default::default();
    for st in state.values() {
        uses[usize::from(st.is_nat())].add(st);
    }
    (state.values().map(|s| s.id).collect(), uses)
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
                dests: BTreeMap::new(),
                slots: 0,
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

    fn dump(&mut self) -> Result<Table, KernelError> {
        let mut state = BTreeMap::new();
        let mut cleanup = Vec::new();
        let mut shared: [BTreeMap<String, Fingerprint>; 2] = Default::default();
        let mut ingress = None;
        let mut tables_ok = true;
        for nat in [false, true] {
            let Some(p) = self.read_table(nat)? else {
                tables_ok = false;
                continue;
            };
            tables_ok &= render::skeleton_objects(nat)
                .iter()
                .all(|o| p.objects.contains(*o));
            state.extend(p.services);
            cleanup.extend(p.cleanup);
            shared[usize::from(nat)] = p.shared;
            if !nat {
                ingress = Some(p.ingress);
            }
        }
        if let Some(max) = state.values().map(|s| s.id).max() {
            self.last_id = self.last_id.max(max);
        }
        self.state = state;
        self.recount();
        self.cleanup = cleanup;
        self.shared = shared;
        self.ingress = ingress;
        self.tables_ok = tables_ok;
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

    /// Removes both of our tables (flows included).
    fn remove_all(&mut self) -> Result<(), KernelError> {
        self.state.clear();
        self.recount();
        self.cleanup.clear();
        self.shared = Default::default();
        self.ingress = None;
        self.tables_ok = false;
        run_nft(&mut self.nft, &render::teardown())
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
        if good.is_empty() && self.ingress.is_some() && self.cleanup.is_empty() {
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
