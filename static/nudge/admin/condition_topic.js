/* The condition builder's "Topic" rule: {"topic": "<slug>", "subscribed": true}, the
   leaf apps/campaigns/topic_leaf.py registers. Its own module, loaded after
   condition_builder.js; the topics come from the vocabulary ("topics": [{slug, name}]). */
const builder = window.NudgeConditionBuilder;

const STATES = [["true", "is subscribed"], ["false", "is not subscribed"]];

function topicRule({ word, selectEl, key, changed, vocab }) {
  function render(node, path) {
    const topics = (vocab().topics || []).map((t) => [t.slug, t.name]);
    return [
      selectEl("subscribed", "Subscribed or not", STATES, String(node.subscribed !== false),
        (v) => { node.subscribed = v === "true"; changed(); }, key(path, "subscribed")),
      word("to the topic"),
      selectEl("topic", "Topic", topics, node.topic,
        (v) => { node.topic = v; changed(); }, key(path, "topic")),
    ];
  }
  return {
    label: "Topic subscription",
    render,
    create: () => ({ topic: ((vocab().topics || [])[0] || { slug: "" }).slug, subscribed: true }),
    fits: (n) => typeof n.topic === "string" && (n.subscribed === undefined || typeof n.subscribed === "boolean"),
  };
}

if (builder && builder.registerRule) builder.registerRule("topic", topicRule);
