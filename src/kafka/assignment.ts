// Which member of a consumer group reads which partitions, decided by the
// group's leader. A member is given partitions only of the topics it
// subscribed to, so one group may consume several topics through members
// with different subscriptions (as upstream's librdkafka consumers allow):
// kafkajs's own round-robin assigner hands every member partitions of the
// leader's topics, which members not subscribed to them drop, leaving those
// partitions unread. Within a topic, partitions go round-robin to the
// subscribed members, each to the least-loaded one so far (fewest partitions
// over all topics), ties broken by member id: deterministic, and balanced
// across topics. Pure.

export interface GroupMember {
  memberId: string;
  topics: string[];
}

/** memberId -> topic -> partitions (only members that receive something). */
export type GroupAssignment = Map<string, Map<string, number[]>>;

export function assignPartitions(members: GroupMember[], partitionsByTopic: Map<string, number[]>): GroupAssignment {
  const sorted = [...members].sort((a, b) => (a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0));
  const load = new Map<string, number>(sorted.map((m) => [m.memberId, 0]));
  const out: GroupAssignment = new Map();
  const topics = [...partitionsByTopic.keys()].sort();
  for (const topic of topics) {
    const eligible = sorted.filter((m) => m.topics.includes(topic));
    if (eligible.length === 0) continue;
    const partitions = [...partitionsByTopic.get(topic)!].sort((a, b) => a - b);
    for (const partition of partitions) {
      let pick = eligible[0]!;
      for (const m of eligible) if (load.get(m.memberId)! < load.get(pick.memberId)!) pick = m;
      load.set(pick.memberId, load.get(pick.memberId)! + 1);
      let byTopic = out.get(pick.memberId);
      if (!byTopic) out.set(pick.memberId, (byTopic = new Map()));
      byTopic.set(topic, [...(byTopic.get(topic) ?? []), partition]);
    }
  }
  return out;
}
