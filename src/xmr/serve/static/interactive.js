// Queries that talk back (docs/interactive.md): Ask&Confirm chips (GET /api/ask) and good / bad marks on results
// (GET /api/search/feedback, Rocchio). Plain JS; user data goes into the DOM via textContent only.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const panel = $("interactive"), askBtn = $("ask-btn"), chips = $("proposals"), answers = $("answers");
  const fbBtn = $("feedback-btn"), grid = $("results");
  let state = { q: "", confirmed: [], rejected: [], shown: [], marks: new Map() };

  function button(text, cls, label, onClick) {
    const b = document.createElement("button");
    b.type = "button"; b.className = cls; b.textContent = text; b.setAttribute("aria-label", label);
    b.addEventListener("click", onClick);
    return b;
  }

  function showAnswers() {
    const parts = [];
    if (state.confirmed.length) parts.push("with: " + state.confirmed.join(", "));
    if (state.rejected.length) parts.push("without: " + state.rejected.join(", "));
    answers.textContent = parts.join(" · ");
  }

  function showProposals(props) {
    chips.replaceChildren(...props.map((p) => {
      const li = document.createElement("li");
      li.className = "chip"; li.dataset.detail = p.detail;
      const t = document.createElement("span"); t.textContent = p.detail;
      t.title = "p(yes) " + p.p_yes.toFixed(2) + ", " + p.gain.toFixed(2) + " bits";
      li.append(t,
        button("✓", "yes", "yes, it shows " + p.detail, () => answer(p.detail, true)),
        button("✗", "no", "no " + p.detail, () => answer(p.detail, false)));
      return li;
    }));
  }

  async function ask() {
    const params = new URLSearchParams({ q: state.q, type: xmr.type() });
    state.confirmed.forEach((d) => params.append("confirm", d));
    state.rejected.forEach((d) => params.append("reject", d));
    xmr.setStatus("Looking for details to ask about…");
    try {
      const data = await xmr.call("/api/ask?" + params.toString());
      xmr.show(data, "“" + data.query + "”", "ask");
      showProposals(data.proposals);
      showAnswers();
    } catch (e) { xmr.setStatus(e.message, true); }
  }

  function answer(detail, yes) {
    (yes ? state.confirmed : state.rejected).push(detail);
    ask();
  }

  function mark(li, id, good, btn) {
    const was = state.marks.get(id);
    li.querySelectorAll(".marks button").forEach((b) => b.setAttribute("aria-pressed", "false"));
    if (was === good) state.marks.delete(id);
    else { state.marks.set(id, good); btn.setAttribute("aria-pressed", "true"); }
    fbBtn.disabled = state.marks.size === 0;
  }

  async function feedback() {
    const params = new URLSearchParams({ q: state.q, type: xmr.type() });
    state.marks.forEach((good, id) => params.append(good ? "good" : "bad", id));
    state.shown.forEach((id) => params.append("shown", id));
    xmr.setStatus("Refining with your marks…");
    try {
      const data = await xmr.call("/api/search/feedback?" + params.toString());
      xmr.show(data, "“" + state.q + "” refined by your marks", "feedback");
    } catch (e) { xmr.setStatus(e.message, true); }
  }

  document.addEventListener("xmr:results", (ev) => {
    const { data, origin } = ev.detail;
    if (origin === "image") { panel.hidden = true; return; }
    if (origin === "text") {  // a new search: answers and marks start over
      state = { q: xmr.query(), confirmed: [], rejected: [], shown: [], marks: new Map() };
      chips.replaceChildren(); showAnswers();
    }
    state.marks = new Map(); fbBtn.disabled = true;
    state.shown = data.results.map((r) => r.id);
    panel.hidden = !state.q || !data.results.length;
    grid.querySelectorAll("li").forEach((li) => {
      const id = Number(li.dataset.id);
      const m = document.createElement("div"); m.className = "marks";
      const g = button("Good", "good", "mark result " + id + " good", () => mark(li, id, true, g));
      const b = button("Bad", "bad", "mark result " + id + " bad", () => mark(li, id, false, b));
      g.setAttribute("aria-pressed", "false"); b.setAttribute("aria-pressed", "false");
      m.append(g, b);
      li.append(m);
    });
  });
  askBtn.addEventListener("click", ask);
  fbBtn.addEventListener("click", feedback);
})();
