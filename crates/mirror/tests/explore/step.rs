//! One step of the world: frames on the links, and each action applied.

use super::*;

/// A frame on the link or in the archive: shared, not copied, by the
/// worlds it is in, and hashed once.
#[derive(Clone)]
pub(crate) struct Frame {
    pub(crate) bytes: Rc<[u8]>,
    pub(crate) digest: u64,
}

impl Frame {
    pub(crate) fn new(bytes: Vec<u8>) -> Self {
        let mut h = DefaultHasher::new();
        bytes.hash(&mut h);
        Frame {
            bytes: bytes.into(),
            digest: h.finish(),
        }
    }
}

/// Frames are told apart by their digest (collisions aside).
impl PartialEq for Frame {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl Hash for Frame {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.digest.hash(state);
    }
}

impl World {
    /// Node `i` after an input, as its mirror task runs: events to the
    /// workers, then every frame due out on the link.
    pub(crate) fn react(&mut self, i: usize) {
        let World {
            nodes,
            link,
            archive,
            now,
            cut,
            caps,
            oversized,
            ..
        } = self;
        let Some(life) = &mut nodes[i].life else {
            return;
        };
        life.take_events();
        while let Some(f) = life.mirror.poll_transmit(*now) {
            if f.len() > MAX_FRAME {
                // The mirror port drops it.
                *oversized = Some((i, f.len()));
                continue;
            }
            if archive[i].len() == caps.archive {
                archive[i].pop_front();
            }
            let f = Frame::new(f);
            archive[i].push_back(f.clone());
            if !cut[i] && link[i].len() < caps.link {
                link[i].push(f);
            }
        }
        life.take_events();
    }

    pub(crate) fn receive(&mut self, to: usize, frame: &[u8]) {
        if let Some(life) = &mut self.nodes[to].life {
            // A refused frame changes nothing but counters.
            let _ = life.mirror.handle_frame(self.now, frame);
            self.react(to);
        }
    }

    pub(crate) fn tick(&mut self) {
        self.now += 1;
        for i in 0..2 {
            if let Some(life) = &mut self.nodes[i].life {
                life.mirror.handle_timeout(self.now);
                self.react(i);
            }
        }
    }

    /// Delivers every frame in flight, and what they make the nodes send,
    /// until the link is empty.
    pub(crate) fn exchange(&mut self) {
        while self.link.iter().any(|l| !l.is_empty()) {
            for from in 0..2 {
                for f in std::mem::take(&mut self.link[from]) {
                    self.receive(1 - from, &f.bytes);
                }
            }
        }
    }

    /// Node `i` dies; if its peer has not synchronised, the pair's memory
    /// of the SAs is gone.
    pub(crate) fn kill(&mut self, i: usize) {
        self.nodes[i].life = None;
        if !self.synced(1 - i) {
            self.amnesia = true;
        }
    }

    pub(crate) fn restart(&mut self, i: usize) {
        self.took_unheard[i] = false;
        let n = &mut self.nodes[i];
        n.epoch += 1;
        n.life = Some(Life::boot(i, n.epoch, self.now));
        self.react(i);
    }

    /// What a fence of node `i` answers now (without fencing it).
    pub(crate) fn fence_answer(&self, i: usize) -> Option<Result<(), FenceRefused>> {
        self.life(i).map(|l| l.mirror.clone().force_unleased())
    }

    /// The host fences node `i` (its peer is powered off): a refusal
    /// changes nothing.
    pub(crate) fn fence(&mut self, i: usize) {
        self.on(i, |l| {
            let _ = l.mirror.force_unleased();
        });
    }

    /// Whether node `i` runs `sa` and may use or accept a fresh number: an
    /// inbound SA at its limit asks for the next one as its worker does
    /// (a stall report), and takes it if the limit rises once the frames
    /// that makes (and the refreshes that follow) go through.
    pub(crate) fn may_go_on(&self, i: usize, sa: Sa) -> bool {
        let Some(life) = self.life(i) else {
            return false;
        };
        if life.may_go_on(sa) || sa.dir == Direction::Outbound {
            return life.may_go_on(sa);
        }
        let Some(next) = life
            .inb
            .get(&sa.spi)
            .filter(|w| w.active)
            .map(|w| w.window.top() + 1)
        else {
            return false;
        };
        let mut probe = self.clone();
        if !probe.alive(1 - i) {
            // What a dead peer sent before its death is not its word now.
            probe.link[1 - i].clear();
        }
        probe.on(i, |l| l.mirror.inbound_stalled(sa.spi, next));
        probe.caps.link = usize::MAX;
        probe.exchange();
        for _ in 0..SETTLE_TICKS {
            probe.tick();
            probe.exchange();
        }
        probe
            .life(i)
            .and_then(|l| l.inb.get(&sa.spi))
            .is_some_and(|w| next < w.limit)
    }

    /// Runs `f` on node `i`'s life, then lets the node react.
    pub(crate) fn on(&mut self, i: usize, f: impl FnOnce(&mut Life)) {
        if let Some(life) = &mut self.nodes[i].life {
            f(life);
            self.react(i);
        }
    }

    /// Node `i`'s worker sends a burst on outbound `sa`.
    pub(crate) fn send(&mut self, i: usize, sa: Sa, burst: Burst) -> Result<(), Violation> {
        let life = self.nodes[i].life.as_mut().expect("enabled: alive");
        let (next, end) = life.burst_end(sa, burst).expect("enabled: may send");
        let again = self.used.entry(sa.spi).or_default().take(next, end);
        let w = life.out.get_mut(&sa.spi).expect("enabled: configured");
        w.next = end;
        let seq = end - 1;
        let crossed = seq / INTERVAL > w.reported / INTERVAL;
        if crossed {
            w.reported = seq;
        }
        // The worker reports at an interval crossing and when it stalls.
        if crossed || end == w.limit {
            life.mirror.outbound_progress(sa.spi, seq, 0, seq);
        }
        self.react(i);
        match again {
            Some(n) => Err(Violation::new(
                Check::OutboundReuse,
                format!("{} used {sa} number {n} again", NAMES[i]),
            )),
            None => Ok(()),
        }
    }

    /// Packets `seqs` of inbound `sa` reach node `i`; its worker accepts
    /// what its window and limit let through (a parked SA nothing),
    /// reports a packet refused at the limit as the ESP core and the
    /// worker do, a crossing of half the interval, and a top half way to
    /// the limit.
    pub(crate) fn accept(
        &mut self,
        i: usize,
        sa: Sa,
        seqs: std::ops::Range<u64>,
    ) -> Result<(), Violation> {
        let life = self.nodes[i].life.as_mut().expect("enabled: alive");
        let w = life.inb.get_mut(&sa.spi).expect("enabled: configured");
        let accepted = self.accepted.entry(sa.spi).or_default();
        let mut again = None;
        for seq in seqs.filter(|_| w.active) {
            if w.window.check(seq).is_err() {
                continue;
            }
            if seq >= w.limit {
                w.wanted = w.wanted.max(seq);
                w.stalls += 1;
                if w.stalls % STALL_REPORT_EVERY == 1 {
                    life.mirror.inbound_stalled(sa.spi, w.wanted);
                }
                continue;
            }
            w.window.check_and_update(seq).expect("checked");
            if !accepted.insert(seq) {
                again = again.or(Some(seq));
            }
        }
        let top = w.window.top();
        if w.report_due() {
            w.reported = top;
            let bitmap = w.window.export();
            life.mirror.inbound_progress(sa.spi, top, &bitmap, 0, top);
        }
        self.react(i);
        match again {
            Some(n) => Err(Violation::new(
                Check::InboundReplay,
                format!("{} accepted {sa} packet {n} again", NAMES[i]),
            )),
            None => Ok(()),
        }
    }

    pub(crate) fn far_send(&mut self, i: usize, sa: Sa, burst: Burst) -> Result<(), Violation> {
        let n = match burst {
            Burst::One => 1,
            Burst::Long => FAR_BURST,
        };
        let far = self.far.entry(sa.spi).or_insert(1);
        let from = *far;
        *far += n;
        self.accept(i, sa, from..from + n)
    }

    /// Every packet the far ends ever sent is replayed to node `i`.
    pub(crate) fn attack(&mut self, i: usize) -> Result<(), Violation> {
        let mut result = Ok(());
        for sa in self.attackable(i) {
            let end = self.far.get(&sa.spi).copied().unwrap_or(1);
            let r = self.accept(i, sa, 1..end);
            result = result.and(r);
        }
        result
    }

    /// Inbound SAs node `i` runs that packets were sent on.
    pub(crate) fn attackable(&self, i: usize) -> Vec<Sa> {
        CATALOGUE
            .into_iter()
            .filter(|sa| sa.dir == Direction::Inbound)
            .filter(|sa| self.life(i).is_some_and(|l| l.runs(*sa)))
            .filter(|sa| self.far.get(&sa.spi).is_some_and(|f| *f > 1))
            .collect()
    }

    /// Carries out `a`; a violation it causes is returned.
    pub(crate) fn apply(&mut self, a: Action) -> Result<(), Violation> {
        self.act(a)?;
        match self.oversized.take() {
            Some((i, len)) => Err(Violation::new(
                Check::FrameSize,
                format!(
                    "{} built a {len}-byte frame; max_frame {MAX_FRAME}",
                    NAMES[i]
                ),
            )),
            None => Ok(()),
        }
    }

    fn act(&mut self, a: Action) -> Result<(), Violation> {
        match a {
            Action::Deliver { from, index } => {
                let f = self.link[from].remove(index);
                self.receive(1 - from, &f.bytes);
            }
            Action::Drop { from, index } => drop(self.link[from].remove(index)),
            Action::Duplicate { from, index } => {
                let f = self.link[from][index].clone();
                self.link[from].insert(index, f);
            }
            Action::Replay { from, index } => {
                let f = self.archive[from][index].clone();
                self.receive(1 - from, &f.bytes);
            }
            Action::Tick => self.tick(),
            Action::Cut => self.cut = [true; 2],
            Action::Heal => self.cut = [false; 2],
            Action::HealFrom(i) => self.cut[i] = false,
            Action::Kill(i) => self.kill(i),
            Action::Restart(i) => self.restart(i),
            Action::TakeOver(i) => {
                let ran = self.life(i).is_some_and(|l| l.runs(IN_A));
                let unheard = self.life(i).is_some_and(|l| !l.mirror.peer_alive());
                self.on(i, |l| {
                    l.mirror.take_over();
                    l.ordered |= !l.mirror.peer_alive();
                });
                if !ran && self.life(i).is_some_and(|l| l.runs(IN_A)) {
                    self.took_unheard[i] = unheard;
                    if !self.alive(1 - i) {
                        return self.check_refusal(i, 0);
                    }
                }
            }
            Action::HandBack(i) => self.on(i, |l| {
                l.mirror.hand_back();
            }),
            Action::Fence(i) => {
                let fenced = self.fence_answer(i).is_some_and(|a| a.is_ok());
                self.fence(i);
                if fenced {
                    return self.check_refusal(i, LOST_LIFE_GRACES);
                }
            }
            Action::Stop(i, handing) => self.on(i, |l| {
                let keys = match handing {
                    Handing::All => l.mirror.drain_sas(),
                    Handing::Home => l.mirror.failback_sas(),
                };
                for (spi, dir) in keys {
                    let _ = l.mirror.stop(spi, dir);
                }
            }),
            Action::HandOverStopped(i) => self.on(i, Life::hand_over_stopped),
            Action::Leave(i) => self.on(i, |l| {
                let _ = l.mirror.leave();
            }),
            Action::FlowFails(i, failed) => self.on(i, |l| l.mirror.set_flow_failed(failed)),
            Action::AddSa(i, sa) => self.on(i, |l| l.install(i, sa)),
            Action::RemoveSa(i, sa) => self.on(i, |l| l.uninstall(sa)),
            Action::Rekey(i) => self.on(i, |l| {
                // Make before break: the new SA, then the old one deleted.
                l.install(i, NEW_A);
                l.uninstall(OUT_A);
            }),
            Action::Send(i, sa, burst) => return self.send(i, sa, burst),
            Action::FarSend(i, sa, burst) => return self.far_send(i, sa, burst),
            Action::Attack(i) => return self.attack(i),
            Action::Stall(i, stalled) => self.on(i, |l| l.stalled = stalled),
            Action::HandOverStalled(i) => self.on(i, Life::hand_over_stalled),
        }
        Ok(())
    }

    /// Property 7 after node `i` took `inA` over from its dead peer, or
    /// was fenced: its worker starts at most `refusal_cap` past the far
    /// end's last packet; a grace more if the peer's life had taken it
    /// over unheard (what that life may have accepted), and after a fence
    /// past the graces a lost life may have taken ([`LOST_LIFE_GRACES`]).
    fn check_refusal(&self, i: usize, graces: u64) -> Result<(), Violation> {
        let (Some(cap), Some(w)) = (
            self.refusal_cap,
            self.life(i).and_then(|l| l.inb.get(&IN_A.spi)),
        ) else {
            return Ok(());
        };
        let last = self.far.get(&IN_A.spi).map_or(0, |n| n - 1);
        let start = w.window.top();
        let graces = graces + u64::from(self.took_unheard[1 - i]);
        if !w.active || start <= last + cap + graces * GRACE.get() {
            return Ok(());
        }
        Err(Violation::new(
            Check::Refusal,
            format!(
                "{} runs {IN_A} from {start}, the far end's last packet {last}: \
                 it refuses {} fresh packets (at most {cap} and {graces} graces)",
                NAMES[i],
                start - last
            ),
        ))
    }

    /// Every action of `alphabet` that can change something here.
    pub(crate) fn actions(&self, alphabet: Alphabet) -> Vec<Action> {
        let mut all = self.link_actions();
        all.extend(self.node_actions());
        all.extend(self.worker_actions());
        all.retain(|a| alphabet.has(a.family()));
        all
    }

    pub(crate) fn link_actions(&self) -> Vec<Action> {
        let mut all = Vec::new();
        for from in 0..2 {
            let to_alive = self.alive(1 - from);
            let frames = &self.link[from];
            for index in 0..frames.len() {
                // Copies side by side are one choice.
                if index > 0 && frames[index] == frames[index - 1] {
                    continue;
                }
                if to_alive {
                    all.push(Action::Deliver { from, index });
                }
                all.push(Action::Drop { from, index });
                if frames.len() < self.caps.link {
                    all.push(Action::Duplicate { from, index });
                }
            }
            if to_alive {
                all.extend(
                    (0..self.archive[from].len()).map(|index| Action::Replay { from, index }),
                );
            }
        }
        all.push(Action::Tick);
        match self.cut {
            [false, false] => all.push(Action::Cut),
            [true, true] => all.extend([Action::Heal, Action::HealFrom(0), Action::HealFrom(1)]),
            _ => all.push(Action::Heal),
        }
        all
    }

    pub(crate) fn node_actions(&self) -> Vec<Action> {
        let mut all = Vec::new();
        for i in 0..2 {
            let Some(life) = self.life(i) else {
                if !self.amnesia {
                    all.push(Action::Restart(i));
                }
                continue;
            };
            if self.alive(1 - i) {
                all.push(Action::Kill(i));
            }
            if !self.alive(1 - i) || self.cut_any() {
                all.push(Action::Fence(i));
            }
            all.push(Action::TakeOver(i));
            // The node hands back (ordered, or its automatic failback) only
            // to a peer it hears that has synchronised.
            if life.mirror.peer_alive() && life.mirror.peer_synced() {
                all.push(Action::HandBack(i));
                if !life.mirror.drain_sas().is_empty() {
                    all.push(Action::Stop(i, Handing::All));
                }
                if !life.mirror.failback_sas().is_empty() {
                    all.push(Action::Stop(i, Handing::Home));
                }
            }
            if !life.mirror.stopped().is_empty() {
                all.push(if life.stalled {
                    Action::HandOverStalled(i)
                } else {
                    Action::HandOverStopped(i)
                });
            }
            all.push(Action::Stall(i, !life.stalled));
            if life.mirror.peer_alive() && !life.mirror.left() {
                all.push(Action::Leave(i));
            }
            all.push(Action::FlowFails(i, !life.mirror.flow_failed()));
            for sa in CATALOGUE {
                all.push(if life.configured(sa) {
                    Action::RemoveSa(i, sa)
                } else {
                    Action::AddSa(i, sa)
                });
            }
            if life.configured(OUT_A) && !life.configured(NEW_A) {
                all.push(Action::Rekey(i));
            }
        }
        all
    }

    pub(crate) fn worker_actions(&self) -> Vec<Action> {
        let mut all = Vec::new();
        for i in 0..2 {
            let Some(life) = self.life(i) else { continue };
            for sa in CATALOGUE {
                match sa.dir {
                    Direction::Outbound => {
                        let one = life.burst_end(sa, Burst::One);
                        let long = life.burst_end(sa, Burst::Long);
                        if one.is_some() {
                            all.push(Action::Send(i, sa, Burst::One));
                        }
                        if long != one {
                            all.push(Action::Send(i, sa, Burst::Long));
                        }
                    }
                    // A packet to a node that does not run the SA is
                    // dropped unseen: for the properties, a packet lost
                    // on the way, which the attacker may send later.
                    Direction::Inbound if life.runs(sa) => {
                        all.push(Action::FarSend(i, sa, Burst::One));
                        all.push(Action::FarSend(i, sa, Burst::Long));
                    }
                    Direction::Inbound => {}
                }
            }
            if !self.attackable(i).is_empty() {
                all.push(Action::Attack(i));
            }
        }
        all
    }

    /// What a node's mirror task does at its next turn with SAs stopped
    /// for a hand-over: hands them over (a stalled worker's past the
    /// highest limits sent it, the worker running again after), or runs
    /// them again; and a packet reaching an SA that waits at its limit is
    /// refused and reported, as the workers do.
    pub(crate) fn finish_hand_overs(&mut self) {
        for i in 0..2 {
            self.on(i, |l| {
                if l.stalled {
                    l.hand_over_stalled();
                    l.stalled = false;
                }
                l.hand_over_stopped();
                l.report_stalls();
            });
        }
    }

    /// Properties 3 and 4: with both nodes alive and the link whole, a
    /// copy of the world is left alone over a perfect link for a while;
    /// then every SA configured on both must have exactly one owner that
    /// runs it. A node that said goodbye by then stops (its drain ends):
    /// its peer must then run everything, as a survivor does (property
    /// 5); both having said goodbye leaves nothing running.
    pub(crate) fn check_settled(&self) -> Result<(), Violation> {
        if let Some(s) = (0..2).find(|&i| self.alive(i) && !self.alive(1 - i)) {
            return self.check_survivor(s);
        }
        if self.cut_any() || !(self.alive(0) && self.alive(1)) {
            return Ok(());
        }
        let mut w = self.clone();
        w.caps.link = usize::MAX;
        w.finish_hand_overs();
        w.exchange();
        for _ in 0..SETTLE_TICKS {
            w.tick();
            w.exchange();
        }
        let gone: Vec<usize> = (0..2)
            .filter(|&i| w.life(i).is_some_and(|l| l.mirror.gone()))
            .collect();
        match gone[..] {
            [] => w.one_owner_each(),
            [g] => {
                w.kill(g);
                w.check_survivor(1 - g)
            }
            _ => Err(Violation::new(
                Check::Liveness,
                "both nodes said goodbye: nothing runs".into(),
            )),
        }
    }

    /// Property 5: with node `s` the only one alive (and not one that said
    /// goodbye: it stops, and a peer dying meanwhile is a double failure),
    /// a copy of the world is left alone until `s` declares its peer dead
    /// and takes its SAs
    /// over (as `takeover: auto`, or the host, has it do: once per failure,
    /// so not again if the host ordered it since `s` last heard its peer,
    /// whatever happened after); then `s` must
    /// own every SA it has, unless it never synchronised since it started
    /// (it cannot know where the SAs stand: the pair's documented limit).
    /// Once the peer is fenced too (the host's order after a takeover),
    /// every one of them must run and may use (or accept) a fresh number:
    /// with leases on, an owner whose peer is dead goes no further than its
    /// slack until then.
    pub(crate) fn check_survivor(&self, s: usize) -> Result<(), Violation> {
        if !self.synced(s) {
            return Ok(());
        }
        let mut w = self.clone();
        w.finish_hand_overs();
        for _ in 0..SETTLE_TICKS {
            w.tick();
        }
        if w.life(s).is_some_and(|l| l.mirror.gone()) {
            return Ok(());
        }
        w.on(s, |l| {
            if !l.ordered {
                l.mirror.take_over();
            }
        });
        let life = w.life(s).expect("alive");
        let configured = || CATALOGUE.into_iter().filter(|sa| life.configured(*sa));
        let unowned: Vec<String> = configured()
            .filter(|sa| !life.mirror.owns(sa.spi, sa.dir))
            .map(|sa| sa.to_string())
            .collect();
        if !unowned.is_empty() {
            return Err(Violation::new(
                Check::Survivor,
                format!(
                    "{} alone, its peer declared dead and taken over: owns none of {}",
                    NAMES[s],
                    unowned.join(", ")
                ),
            ));
        }
        let mut fenced = w.clone();
        let mut refused = None;
        fenced.on(s, |l| refused = l.mirror.force_unleased().err());
        if let Some(why) = refused {
            return Err(Violation::new(
                Check::Survivor,
                format!(
                    "{} alone, its peer declared dead: the fence is refused ({why})",
                    NAMES[s]
                ),
            ));
        }
        let life = fenced.life(s).expect("alive");
        let stuck: Vec<String> = CATALOGUE
            .into_iter()
            .filter(|sa| life.configured(*sa) && !fenced.may_go_on(s, *sa))
            .map(|sa| sa.to_string())
            .collect();
        if stuck.is_empty() {
            return Ok(());
        }
        Err(Violation::new(
            Check::Survivor,
            format!(
                "{} alone, its peer declared dead, taken over and fenced: may not go on with {}",
                NAMES[s],
                stuck.join(", ")
            ),
        ))
    }

    pub(crate) fn one_owner_each(&self) -> Result<(), Violation> {
        let (Some(a), Some(b)) = (self.life(0), self.life(1)) else {
            return Ok(());
        };
        let both = CATALOGUE
            .into_iter()
            .filter(|sa| a.configured(*sa) && b.configured(*sa));
        for sa in both {
            let owner = |l: &Life| {
                l.mirror
                    .views()
                    .into_iter()
                    .find(|v| v.spi == sa.spi && v.dir == sa.dir)
                    .map(|v| v.owner)
            };
            let views = [owner(a), owner(b)];
            let owns = [a.mirror.owns(sa.spi, sa.dir), b.mirror.owns(sa.spi, sa.dir)];
            let runs = [a.runs(sa), b.runs(sa)];
            let state = format!(
                "{sa} left alone: owner in A's view {:?}, in B's {:?}; owns (A, B) {owns:?}; workers run it (A, B) {runs:?}",
                views[0], views[1]
            );
            let owner = IDS.iter().position(|id| views[0] == Some(*id));
            let Some(o) = owner.filter(|_| views[0] == views[1]) else {
                return Err(Violation::new(Check::Ownership, state));
            };
            if owns[1 - o] || runs[1 - o] {
                return Err(Violation::new(Check::Ownership, state));
            }
            if !(owns[o] && self.may_go_on(o, sa)) {
                return Err(Violation::new(
                    Check::Liveness,
                    format!("{state}; its owner may not go on"),
                ));
            }
        }
        Ok(())
    }

    /// One line per node and one for the link, for traces.
    pub(crate) fn summary(&self) -> String {
        let nodes: Vec<String> = (0..2).map(|i| self.node_summary(i)).collect();
        format!(
            "t={} {}{}\n        {}\n        {}\n        link A→B {} B→A {}",
            self.now,
            match self.cut {
                [true, true] => "link cut ",
                [true, false] => "link cut A→B ",
                [false, true] => "link cut B→A ",
                _ => "",
            },
            if self.amnesia { "amnesia" } else { "" },
            nodes[0],
            nodes[1],
            self.link[0].len(),
            self.link[1].len()
        )
    }

    pub(crate) fn node_summary(&self, i: usize) -> String {
        let Some(l) = self.life(i) else {
            return format!("{} dead (last epoch {})", NAMES[i], self.nodes[i].epoch);
        };
        let m = &l.mirror;
        let mut s = format!(
            "{} epoch {} {} peer {}:",
            NAMES[i],
            self.nodes[i].epoch,
            if m.synced() { "synced" } else { "unsynced" },
            if m.peer_alive() { "alive" } else { "dead" }
        );
        let limit = |l: u64| {
            if l == u64::MAX {
                "∞".to_string()
            } else {
                l.to_string()
            }
        };
        for v in m.views() {
            let name = sa_named(v.spi, v.dir);
            s += &format!(
                " {name}[owner {} g{}",
                NAMES[v.owner as usize - 1],
                v.generation
            );
            if m.asking(v.spi, v.dir) {
                s += " asking";
            }
            s += &match v.dir {
                Direction::Outbound => l.out.get(&v.spi).map_or(String::new(), |w| {
                    let run = if w.active { "runs" } else { "parked" };
                    format!(" {run} next {} limit {}", w.next, limit(w.limit))
                }),
                Direction::Inbound => l.inb.get(&v.spi).map_or(String::new(), |w| {
                    let run = if w.active { "runs" } else { "parked" };
                    format!(" {run} top {} limit {}", w.window.top(), limit(w.limit))
                }),
            };
            s += &v.stored.map_or(String::new(), |x| format!(" stored {x}"));
            s += "]";
        }
        s
    }
}
