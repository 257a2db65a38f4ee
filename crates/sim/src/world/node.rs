//! The license node: syncs decided by the real sync-token chain (`leasehold_node::chain`).

use super::*;

impl World<'_> {
    pub(super) fn node_sync(
        &mut self,
        s: usize,
        token: Option<u64>,
        buckets: &[(u64, Counts)],
    ) -> Result<(u64, u64), String> {
        let instance = self.servers[s].disk.instance.clone();
        let g = &self.node.guids[s];
        let lookup = match token {
            None => TokenLookup::Absent,
            Some(t) => match g.tokens.get(&t) {
                Some((generation, revoked)) => TokenLookup::Found {
                    generation: *generation,
                    revoked: *revoked,
                },
                None => TokenLookup::Unknown,
            },
        };
        let step = decide(g.bound.as_ref(), g.head, &instance, lookup).map_err(|r| r.message)?;
        for (seq, c) in buckets {
            match self.node.stored.get(&(s, *seq)) {
                Some(old) => {
                    self.stats.duplicate_bucket_uploads += 1;
                    if old != c && self.node.conflict.is_none() {
                        self.node.conflict = Some(format!(
                            "the {} server uploaded bucket {seq} again as {c:?}, but the node holds it as {old:?}",
                            SERVER_NAMES[s]
                        ));
                    }
                }
                None => {
                    self.node.stored.insert((s, *seq), *c);
                    self.node.total_grants += c.grants;
                    self.node.max_seq[s] = self.node.max_seq[s].max(*seq);
                }
            }
        }
        let token: u64 = self.rng.gen();
        let g = &mut self.node.guids[s];
        let generation = match step {
            ChainStep::Bind => {
                g.bound = Some(instance);
                g.tokens.clear();
                1
            }
            ChainStep::Advance => g.head + 1,
            ChainStep::Branch { from_generation } => {
                for (gen, revoked) in g.tokens.values_mut() {
                    if *gen > from_generation {
                        *revoked = true;
                    }
                }
                from_generation + 1
            }
        };
        g.tokens.insert(token, (generation, false));
        g.head = generation;
        Ok((token, self.node.max_seq[s]))
    }

    // ---------------------------------------------------------------------------------
    // Clients
}
