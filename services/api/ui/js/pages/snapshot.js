import { api } from "../api.js";
import { badge, card, h, mount, table, when } from "../dom.js";
import { qualityTable } from "./quality.js";

export async function snapshotPage(view, id) {
  const s = await api(`/v1/snapshots/${id}`);
  if (!view.alive()) return;
  const stats = s.stats || {};
  const dropped = Object.entries(stats.dropped || {});
  const examples = s.dropped || [];
  mount(view.root,
    h("h1", {}, `Snapshot ${s.name || s.id}`),
    h("p", {}, badge(s.status), " ", h("span", { class: "mono" }, s.content_hash || "")),
    h("div", { class: "grid" }, card("input", stats.input ?? "–"), card("rows", s.num_items),
      card("train", stats.train ?? "–"), card("validation", stats.val ?? "–"),
      card("created", when(s.created_at))),
    s.error ? h("p", { class: "error" }, s.error) : null,
    h("h2", {}, "Dropped, by reason"),
    dropped.length
      ? Object.assign(table([["reason", (r) => r[0]], ["triplets", (r) => r[1]]], dropped), { id: "drop-reasons" })
      : h("p", { class: "muted" }, "No curation step ran."),
    h("h2", {}, "Quality of the selected rows"), qualityTable(stats.quality),
    h("h2", {}, `Dropped triplets (${examples.length})`),
    examples.length ? table([
      ["reason", (d) => d.reason], ["item", (d) => d.item_id],
      ["triplet", (d) => h("span", { class: "mono" }, d.triplet_id)],
      ["detail", (d) => d.kept_item_id ? `duplicate of ${d.kept_item_id}` : (d.sets || []).join(", ")],
    ], examples.slice(0, 500)) : h("p", { class: "muted" }, "None."));
}
