// layerprof's HTML report: tooltips, the layer table (fold, sort, filter), and the charts' links to
// its rows. Everything the report says is read from the DOM as text, never written back as markup.
(function () {
  "use strict";
  var errors = [];
  window.addEventListener("error", function (event) { errors.push(String(event.message)); });

  function all(selector, root) { return Array.prototype.slice.call((root || document).querySelectorAll(selector)); }
  function one(selector, root) { return (root || document).querySelector(selector); }

  // -- tooltips: titles become the page's own tooltip (one at a time, no browser delay) --------------
  var tip = document.getElementById("tip");
  all("svg circle > title").forEach(function (title) {
    title.parentNode.setAttribute("data-tip", title.textContent);
    title.parentNode.removeChild(title);
  });
  all("[title]").forEach(function (el) {
    el.setAttribute("data-tip", el.getAttribute("title"));
    el.removeAttribute("title");
  });
  function placeTip(x, y) {
    var box = tip.getBoundingClientRect();
    var left = Math.min(x + 14, window.innerWidth - box.width - 6);
    var top = y + 16 + box.height > window.innerHeight ? y - box.height - 10 : y + 16;
    tip.style.left = Math.max(4, left) + "px";
    tip.style.top = Math.max(4, top) + "px";
  }
  function tipTarget(node) { return node && node.closest ? node.closest("[data-tip]") : null; }
  document.addEventListener("mouseover", function (event) {
    var el = tipTarget(event.target);
    if (!el) return;
    tip.textContent = el.getAttribute("data-tip");
    tip.hidden = false;
    placeTip(event.clientX, event.clientY);
  });
  document.addEventListener("mousemove", function (event) { if (!tip.hidden) placeTip(event.clientX, event.clientY); });
  document.addEventListener("mouseout", function (event) {
    var el = tipTarget(event.target);
    if (el && !el.contains(event.relatedTarget)) tip.hidden = true;
  });

  // -- the layer table ---------------------------------------------------------------------------------
  var table = document.getElementById("layers");
  if (!table) return;
  var tbody = table.tBodies[0];
  var foldRow = document.getElementById("fold");
  var search = document.getElementById("search");
  var count = document.getElementById("count");
  var heads = all("thead th", table);
  var keys = heads.map(function (th) { return th.getAttribute("data-key"); });
  var numeric = heads.map(function (th) { return th.getAttribute("data-type") === "num"; });
  var kindColumn = keys.indexOf("kind");

  function nameOf(tr) { return tr.cells[0].lastChild ? tr.cells[0].lastChild.textContent : ""; }
  var nodes = all("tr[data-id]", tbody).map(function (tr, order) {
    var name = nameOf(tr);
    var kind = kindColumn >= 0 ? tr.cells[kindColumn].textContent : "";
    return {
      id: tr.id, tr: tr, order: order, kids: [], up: null, name: name,
      parent: tr.getAttribute("data-parent"), depth: Number(tr.getAttribute("data-depth")),
      container: tr.classList.contains("container"), button: one("button.tog", tr),
      text: (name + " " + kind).toLowerCase()
    };
  });
  var byId = {};
  nodes.forEach(function (n) { byId[n.id] = n; });
  nodes.forEach(function (n) {
    n.up = byId[n.parent] || null;
    if (n.up) n.up.kids.push(n);
  });
  var roots = nodes.filter(function (n) { return !n.up; });

  // expanded: the containers shown unfolded; saved: what they were before a search unfolded its matches
  var state = { view: table.getAttribute("data-view") || "tree", expanded: new Set(), saved: null, depth: null,
                sortKey: table.getAttribute("data-sort") || "", sortDir: "desc", query: "",
                top: Number(table.getAttribute("data-top")) || 0 };
  var initialDepth = table.getAttribute("data-depth");
  setDepth(initialDepth === "" ? null : Number(initialDepth));

  function setDepth(depth) {
    state.depth = depth;
    state.expanded = new Set(nodes.filter(function (n) {
      return n.container && (depth === null || n.depth < depth);
    }).map(function (n) { return n.id; }));
    if (state.saved) state.saved = new Set(state.expanded);
  }
  function matches(n) { var q = state.query.trim().toLowerCase(); return !q || n.text.indexOf(q) >= 0; }
  function setQuery(text) {
    var searching = !!text.trim();
    if (searching && !state.saved) state.saved = new Set(state.expanded);
    state.query = text;
    if (search.value !== text) search.value = text;
    if (!state.saved) return;
    state.expanded = new Set(state.saved);
    if (!searching) { state.saved = null; return; }
    nodes.forEach(function (n) {  // unfold the modules above every match
      if (matches(n)) for (var up = n.up; up; up = up.up) state.expanded.add(up.id);
    });
  }

  function value(n, key) {
    var i = keys.indexOf(key);
    if (i < 0) {  // a sort key without a column (macs): read off the row
      var raw = n.tr.getAttribute("data-" + key);
      return raw === null || raw === "" ? null : Number(raw);
    }
    if (key === "name") return n.name;
    if (!numeric[i]) return n.tr.cells[i].textContent;
    var v = n.tr.cells[i].getAttribute("data-v");
    return v === null || v === "" ? null : Number(v);
  }
  function ordered(list) {
    if (!state.sortKey) return list.slice();
    var sign = state.sortDir === "asc" ? 1 : -1;
    return list.map(function (n) { return [n, value(n, state.sortKey)]; }).sort(function (a, b) {
      var va = a[1], vb = b[1];
      if (va === null || vb === null) {  // missing values last, either way round
        return va === vb ? a[0].order - b[0].order : (va === null ? 1 : -1);
      }
      var c = typeof va === "number" ? va - vb : String(va).localeCompare(String(vb));
      return sign * c || a[0].order - b[0].order;
    }).map(function (pair) { return pair[0]; });
  }

  function layout() {
    var keep = null;
    if (state.query.trim()) {
      keep = new Set();
      nodes.forEach(function (n) {
        if (matches(n)) for (var m = n; m; m = m.up) keep.add(m.id);
      });
    }
    var shown = [];
    if (state.view === "tree") {
      (function walk(list) {
        ordered(list).forEach(function (n) {
          if (keep && !keep.has(n.id)) return;
          shown.push(n);
          if (n.container && state.expanded.has(n.id)) walk(n.kids);
        });
      })(roots);
    } else {  // flat: the rows the tree shows unfolded, sorted all together
      var cut = [];
      (function walk(list) {
        list.forEach(function (n) {
          if (n.container && state.expanded.has(n.id)) walk(n.kids);
          else cut.push(n);
        });
      })(roots);
      shown = ordered(cut.filter(matches));
    }
    var folded = 0;
    if (state.top && foldRow && state.view === "flat" && !keep && shown.length > state.top) {
      folded = shown.length - state.top;
      shown = shown.slice(0, state.top);
    }
    return { shown: shown, folded: folded };
  }

  function render() {
    var result = layout();
    var visible = new Set(result.shown);
    var fragment = document.createDocumentFragment();
    result.shown.forEach(function (n) { n.tr.hidden = false; fragment.appendChild(n.tr); });
    if (foldRow) { foldRow.hidden = !result.folded; fragment.appendChild(foldRow); }
    nodes.forEach(function (n) { if (!visible.has(n)) { n.tr.hidden = true; fragment.appendChild(n.tr); } });
    tbody.appendChild(fragment);
    table.classList.toggle("flat", state.view === "flat");
    nodes.forEach(function (n) {
      if (!n.button) return;
      var open = state.expanded.has(n.id);
      n.button.setAttribute("aria-expanded", String(open));
      n.button.setAttribute("aria-label", (open ? "fold " : "unfold ") + n.name);
    });
    heads.forEach(function (th, i) {
      if (keys[i] === state.sortKey) th.setAttribute("aria-sort", state.sortDir === "asc" ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    });
    all(".toolbar [data-view]").forEach(function (b) { b.setAttribute("aria-pressed", String(b.getAttribute("data-view") === state.view)); });
    all("[data-depth]", one(".toolbar")).forEach(function (b) {
      var d = b.getAttribute("data-depth");
      b.setAttribute("aria-pressed", String(state.depth !== undefined && (d === "" ? null : Number(d)) === state.depth));
    });
    count.textContent = result.shown.length + " of " + nodes.length + " rows shown" +
      (result.folded ? ", " + result.folded + " more folded into one (click it)" : "");
  }

  function changed() { state.top = 0; render(); }

  heads.forEach(function (th, i) {
    th.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); th.click(); }
    });
    th.addEventListener("click", function () {
      var first = numeric[i] ? "desc" : "asc";
      if (state.sortKey !== keys[i]) { state.sortKey = keys[i]; state.sortDir = first; }
      else if (state.sortDir === first) state.sortDir = first === "desc" ? "asc" : "desc";
      else state.sortKey = "";  // a third click: back to the order the rows ran in
      changed();
    });
  });
  tbody.addEventListener("click", function (event) {
    var button = event.target.closest("button.tog");
    var tr = event.target.closest("tr");
    if (!tr) return;
    if (tr === foldRow) { changed(); return; }
    var n = byId[tr.id];
    if (!n) return;
    if (button) {
      if (state.expanded.has(n.id)) state.expanded.delete(n.id); else state.expanded.add(n.id);
      state.depth = undefined;
      changed();
      return;
    }
    select(n, false);
  });
  all(".toolbar [data-view]").forEach(function (b) {
    b.addEventListener("click", function () { state.view = b.getAttribute("data-view"); changed(); });
  });
  all("[data-depth]", one(".toolbar")).forEach(function (b) {
    b.addEventListener("click", function () {
      var d = b.getAttribute("data-depth");
      setDepth(d === "" ? null : Number(d));
      changed();
    });
  });
  search.addEventListener("input", function () { setQuery(search.value); changed(); });
  search.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { setQuery(""); changed(); }
  });

  // -- selecting a row: from a dot or a bar (reveal it), or from the table (light its dots) ------------
  function inside(n) {
    var ids = new Set();
    (function add(m) { ids.add(m.id); m.kids.forEach(add); })(n);
    return ids;
  }
  function select(n, scroll) {
    all(".hit").forEach(function (el) { el.classList.remove("hit"); });
    n.tr.classList.add("hit");
    var ids = inside(n);
    all("[data-row]").forEach(function (el) {
      if (!ids.has(el.getAttribute("data-row"))) return;
      el.classList.add("hit");
      if (el.tagName.toLowerCase() === "circle") el.parentNode.appendChild(el);  // on top of the others
    });
    if (scroll) n.tr.scrollIntoView({ block: "center" });
  }
  function reveal(id) {
    var n = byId[id];
    if (!n) return;
    if (!matches(n)) setQuery("");
    for (var up = n.up; up; up = up.up) {
      if (!state.expanded.has(up.id)) { state.expanded.add(up.id); state.depth = undefined; }
    }
    changed();
    select(n, true);
  }
  document.addEventListener("click", function (event) {
    var el = event.target.closest ? event.target.closest("[data-row]") : null;
    if (el && el.getAttribute("data-row")) reveal(el.getAttribute("data-row"));
  });

  render();

  // -- ?selftest: drive the page as a reader would and write what it saw into pre#selftest ------------
  if (!/[?&]selftest(=|&|$)/.test(location.search)) return;
  var query = new URLSearchParams(location.search).get("q") || "conv";
  function click(el) { el.dispatchEvent(new MouseEvent("click", { bubbles: true, cancelable: true, view: window })); }
  function shownRows() { return all("tr", tbody).filter(function (tr) { return !tr.hidden; }); }
  function info(tr) {
    var flops = keys.indexOf("flops");
    return { id: tr.id, name: nameOf(tr), parent: tr.getAttribute("data-parent") || "",
             depth: Number(tr.getAttribute("data-depth") || 0), flops: Number(tr.cells[flops].getAttribute("data-v")) };
  }
  function rows() { return shownRows().map(info); }
  function ids() { return shownRows().map(function (tr) { return tr.id; }); }
  var out = { title: document.title, rows: nodes.length, scripts: document.scripts.length,
              images: document.images.length };
  function step(name, run) {
    try { out[name] = run(); } catch (error) { errors.push(name + ": " + (error && error.stack || error)); }
  }
  var view = function (v) { var b = one('.toolbar [data-view="' + v + '"]'); if (b) click(b); };
  var depth = function (d) { var b = one('.toolbar [data-depth="' + d + '"]'); if (b) click(b); };
  var head = function (key) { return one('thead th[data-key="' + key + '"]', table); };
  step("initial", rows);
  step("fold", function () {
    view("tree"); depth("");
    var tr = one("tr.container", tbody);
    if (!tr) return null;
    var before = ids();
    click(one("button.tog", tr));
    var folded = ids(), expanded = one("button.tog", tr).getAttribute("aria-expanded");
    click(one("button.tog", tr));
    return { id: tr.id, before: before, folded: folded, expanded: expanded, unfolded: ids() };
  });
  step("depth1", function () { depth("1"); var seen = rows(); depth(""); return seen; });
  step("sort", function () {
    view("tree");
    click(head("flops"));
    var tree = rows(), mark = head("flops").getAttribute("aria-sort");
    view("flat");
    var flat = rows();
    click(head("flops"));
    var ascending = rows();
    click(head("flops"));
    return { tree: tree, mark: mark, flat: flat, ascending: ascending, cleared: rows() };
  });
  step("search", function () {
    view("tree");
    search.value = query;
    search.dispatchEvent(new Event("input", { bubbles: true }));
    var tree = rows();
    view("flat");
    var flat = rows();
    search.value = "";
    search.dispatchEvent(new Event("input", { bubbles: true }));
    return { query: query, tree: tree, flat: flat, cleared: rows() };
  });
  step("dot", function () {
    view("tree"); depth("1");
    var dots = all("svg circle.dot[data-row]");
    if (!dots.length) return null;
    var dot = dots.reduce(function (a, b) {
      return byId[b.getAttribute("data-row")].depth > byId[a.getAttribute("data-row")].depth ? b : a;
    });
    var hiddenBefore = byId[dot.getAttribute("data-row")].tr.hidden;
    click(dot);
    var hit = all("tr.hit", tbody), box = hit.length ? hit[0].getBoundingClientRect() : null;
    var frame = one("div.scroll").getBoundingClientRect();
    return {
      row: dot.getAttribute("data-row"), hiddenBefore: hiddenBefore,
      hit: hit.map(function (tr) { return tr.id; }), visible: hit.length > 0 && !hit[0].hidden,
      inView: !!box && box.top >= frame.top && box.bottom <= frame.bottom && box.top >= 0 && box.bottom <= window.innerHeight,
      dotsLit: all("circle.dot.hit").map(function (c) { return c.getAttribute("data-row"); }),
      shown: ids()
    };
  });
  step("tooltip", function () {
    var dot = one("svg circle.dot");
    if (!dot) return null;
    var box = dot.getBoundingClientRect();
    dot.dispatchEvent(new MouseEvent("mouseover", { bubbles: true, clientX: box.left + 1, clientY: box.top + 1 }));
    var seen = { row: dot.getAttribute("data-row"), hidden: tip.hidden, text: tip.textContent };
    dot.dispatchEvent(new MouseEvent("mouseout", { bubbles: true, relatedTarget: document.body }));
    seen.hiddenAfter = tip.hidden;
    return seen;
  });
  step("bar", function () {
    var bar = one("ol.ranked li[data-row]");
    if (!bar) return null;
    click(bar);
    return { row: bar.getAttribute("data-row"), hit: all("tr.hit", tbody).map(function (tr) { return tr.id; }) };
  });
  out.errors = errors;
  var pre = document.createElement("pre");
  pre.id = "selftest";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
