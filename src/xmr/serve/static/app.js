// xmr search page: plain JS, no build step. All user data goes into the DOM via textContent/attributes only.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("search-form"), box = $("q"), typeSel = $("type"), fileIn = $("image-file");
  const status = $("status"), grid = $("results");

  function setStatus(text, isError) {
    status.textContent = text;
    status.classList.toggle("error", !!isError);
  }

  async function call(url, opts) {
    const resp = await fetch(url, opts);
    let body = null;
    try { body = await resp.json(); } catch (e) { /* not JSON */ }
    if (!resp.ok) throw new Error((body && body.error) || ("HTTP " + resp.status));
    return body;
  }

  function fmtTime(t) {
    const m = Math.floor(t / 60), s = (t - 60 * m).toFixed(1);
    return m + ":" + (s < 10 ? "0" : "") + s;
  }

  function card(r) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.className = "card";
    a.href = r.media;
    a.target = "_blank";
    a.rel = "noopener";
    a.dataset.rank = r.rank;
    a.setAttribute("aria-label", "#" + r.rank + " " + r.path + " score " + r.score.toFixed(3));
    let media;
    if (r.media_type === "video") {
      media = document.createElement("video");
      const hasSeg = typeof r.start === "number" && typeof r.end === "number";
      media.src = r.media + (hasSeg ? "#t=" + r.start + "," + r.end : "");
      media.poster = r.thumbnail;
      media.muted = true;
      media.preload = "metadata";
      media.playsInline = true;
      // play the matched segment when the card is hovered or focused
      const play = () => { if (hasSeg && (media.currentTime < r.start || media.currentTime >= r.end)) media.currentTime = r.start; media.play().catch(() => {}); };
      const stop = () => media.pause();
      a.addEventListener("mouseenter", play); a.addEventListener("focus", play);
      a.addEventListener("mouseleave", stop); a.addEventListener("blur", stop);
      if (hasSeg) media.addEventListener("timeupdate", () => { if (media.currentTime >= r.end) { media.currentTime = r.start; } });
    } else {
      media = document.createElement("img");
      media.src = r.thumbnail;
      media.loading = "lazy";
      media.alt = r.path;
    }
    media.className = "media";
    const meta = document.createElement("div");
    meta.className = "meta";
    const p = document.createElement("span"); p.className = "path"; p.textContent = r.path; p.title = r.path;
    const s = document.createElement("span"); s.className = "score"; s.textContent = r.score.toFixed(3);
    meta.append(p, s);
    a.append(media, meta);
    if (typeof r.start === "number" && typeof r.end === "number") {
      const seg = document.createElement("div"); seg.className = "seg";
      seg.textContent = fmtTime(r.start) + " – " + fmtTime(r.end);
      a.append(seg);
    }
    li.dataset.id = r.id;
    const ex = r.experts && r.match && r.experts[r.match];
    if (ex || (r.match && r.weights)) {  // an index with experts: which one matched, and the text it read
      const m = document.createElement("div"); m.className = "expert";
      const tag = document.createElement("span"); tag.className = "expert-name"; tag.textContent = r.match;
      m.append(tag);
      if (ex) {
        const snip = document.createElement("span"); snip.className = "snippet";
        snip.textContent = ex.text.length > 120 ? ex.text.slice(0, 117) + "…" : ex.text;
        snip.title = ex.field + ": " + ex.text;
        m.append(" ", snip);
      }
      if (r.weights) {  // a trained fuser (xmr serve --expert-fusion laff:DIR): the weight of each source
        const w = document.createElement("div"); w.className = "weights";
        w.textContent = "fused: " + Object.keys(r.weights).map(function (k) {
          return k + " " + r.weights[k].toFixed(2);
        }).join(" · ");
        w.title = "weights the trained fuser gave each source of this item";
        m.append(w);
      }
      a.append(m);
    }
    li.append(a);
    return li;
  }

  function show(data, label, origin) {
    grid.replaceChildren(...data.results.map(card));
    const n = data.results.length;
    // the model's own re-scoring (concept: QB-Norm on text queries), said where the user sees the results
    const own = (data.stages || []).find((st) => st.stage === "rescore" && st.origin === "model default" && st.applied);
    setStatus((n ? n + " result" + (n === 1 ? "" : "s") + " for " + label : "No results for " + label) +
              (n && own ? " · re-scored: " + own.summary : ""));
    // interactive.js (Ask&Confirm chips, good / bad buttons) listens; origin: "text", "image" or its own
    document.dispatchEvent(new CustomEvent("xmr:results", { detail: { data: data, origin: origin || "text" } }));
  }

  async function searchText(q) {
    q = q.trim();
    if (!q) { setStatus("Type something to search for.", true); box.focus(); return; }
    const params = new URLSearchParams({ q: q, type: typeSel.value });
    history.replaceState(null, "", "?" + params.toString());
    setStatus("Searching…");
    try { show(await call("/api/search?" + params.toString()), "“" + q + "”"); }
    catch (e) { grid.replaceChildren(); setStatus(e.message, true); }
  }

  async function searchImage(file) {
    const fd = new FormData();
    fd.append("file", file);
    const params = new URLSearchParams({ type: typeSel.value });
    const change = composedText();  // composed query: the image changed as the text says
    if (change) params.append("text", change);
    setStatus(change ? "Searching by image, changed…" : "Searching by image…");
    const label = "the image " + file.name + (change ? " changed “" + change + "”" : "");
    try { show(await call("/api/search/image?" + params.toString(), { method: "POST", body: fd }), label, "image"); }
    catch (e) { grid.replaceChildren(); setStatus(e.message, true); }
  }

  // composed queries: the optional "changed" box beside "Search by image"
  const modifyBox = document.getElementById("modify");
  function composedText() { return modifyBox ? modifyBox.value.trim() : ""; }

  form.addEventListener("submit", (ev) => { ev.preventDefault(); searchText(box.value); });
  typeSel.addEventListener("change", () => { if (box.value.trim()) searchText(box.value); });
  fileIn.addEventListener("change", () => { if (fileIn.files.length) searchImage(fileIn.files[0]); fileIn.value = ""; });
  document.querySelector(".upload").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); fileIn.click(); }
  });

  // keyboard: "/" focuses the box, arrows move between results, Esc goes back to the box
  const cards = () => Array.from(grid.querySelectorAll(".card"));
  function columns() {
    const cs = cards();
    if (cs.length < 2) return 1;
    const top = cs[0].getBoundingClientRect().top;
    const n = cs.findIndex((c) => c.getBoundingClientRect().top !== top);
    return n === -1 ? cs.length : n;
  }
  document.addEventListener("keydown", (ev) => {
    const inField = ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement;
    if (ev.key === "/" && !inField) { ev.preventDefault(); box.focus(); box.select(); return; }
    if (ev.key === "Escape") { box.focus(); return; }
    const cs = cards();
    if (!cs.length) return;
    const i = cs.indexOf(document.activeElement);
    const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(), ArrowUp: -columns() }[ev.key];
    if (step === undefined) return;
    if (i === -1) {
      if (ev.target === box && ev.key === "ArrowDown") { ev.preventDefault(); cs[0].focus(); }
      return;
    }
    ev.preventDefault();
    const j = i + step;
    if (j < 0 && ev.key === "ArrowUp") { box.focus(); return; }
    cs[Math.max(0, Math.min(cs.length - 1, j))].focus();
  });

  window.xmr = { show: show, call: call, setStatus: setStatus, query: () => box.value.trim(), type: () => typeSel.value };

  call("/health").then((h) => { $("index-info").textContent = h.items + " items · model " + h.model; }).catch(() => {});
  const initial = new URLSearchParams(location.search);
  if (initial.get("type")) typeSel.value = initial.get("type");
  if (initial.get("q")) { box.value = initial.get("q"); searchText(box.value); }
})();
