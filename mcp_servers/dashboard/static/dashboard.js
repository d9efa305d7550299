// mcp-stack dashboard: live updates over SSE, async forms with the CSRF header, small SVG charts.
// No inline script (the CSP forbids it); all data goes into the DOM through textContent.
"use strict";

(function () {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  // Human units; the same as templates/_units.html, which renders the first view.
  const units = {
    duration(seconds) {
      if (seconds === null || seconds === undefined || seconds === "") return "";
      const s = Number(seconds);
      if (s < 1) return Math.round(s * 1000) + " ms";
      if (s < 60) return s.toFixed(1) + " s";
      if (s < 3600) return Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
      if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
      return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
    },
    usd(x) { return x === null || x === undefined ? "" : "$" + (x < 1 ? Number(x).toFixed(4) : Number(x).toFixed(2)); },
    rate(x) { return x >= 100 ? x.toFixed(0) + "/s" : x >= 1 ? x.toFixed(1) + "/s" : x.toFixed(2) + "/s"; },
    ratio(x) { return (x * 100).toFixed(x < 0.1 && x > 0 ? 1 : 0) + " %"; },
    seconds(x) { return x < 1 ? (x * 1000).toFixed(x < 0.01 ? 1 : 0) + " ms" : x.toFixed(2) + " s"; },
    clock(epochSeconds) { return new Date(epochSeconds * 1000).toLocaleTimeString([], { hour12: false }); },
  };
  const el = (tag, attrs, text) => {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };

  // Forms marked data-async post with fetch and show the answer without leaving the page.
  function wireAsyncForms() {
    document.querySelectorAll("form[data-async]").forEach((form) => {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const button = form.querySelector("[data-confirm]");
        if (button && !window.confirm(button.dataset.confirm)) return;
        const out = document.querySelector("[data-result]");
        try {
          const response = await fetch(form.action, {
            method: "POST",
            body: new URLSearchParams(new FormData(form)),
            headers: { "X-CSRF-Token": csrf(), Accept: "application/json" },
            credentials: "same-origin",
          });
          const body = await response.json().catch(() => ({}));
          if (out) {
            out.className = response.ok ? "result ok" : "result error";
            out.textContent = response.ok ? describe(body) : body.message || body.error || response.statusText;
          }
          if (response.ok && form.id === "submit-task") {
            // Keep the chosen backend (a reset would go back to the server's default).
            const backend = form.querySelector("#backend");
            const chosen = backend ? backend.value : null;
            form.reset();
            if (backend && chosen) backend.value = chosen;
          }
        } catch (error) {
          if (out) { out.className = "result error"; out.textContent = String(error); }
        }
      });
    });
  }

  function describe(body) {
    if (body.task_id) return "Task " + body.task_id + " " + body.status;
    if (body.command_id) return "Restart of " + body.server + " requested (#" + body.command_id + ")";
    if (body.status) return "Task " + (body.id || "") + " " + body.status;
    return "Done";
  }

  function stream(url, event, handler) {
    const source = new EventSource(url);
    source.addEventListener(event, (message) => handler(JSON.parse(message.data)));
    return source;
  }

  // Overview: states, counters and charts.
  function overview(snapshot) {
    Object.entries(snapshot.servers).forEach(([name, s]) => {
      const row = document.querySelector('tr[data-server="' + name + '"]');
      if (!row) return;
      const set = (field, value) => { const c = row.querySelector('[data-field="' + field + '"]'); if (c) c.textContent = value; };
      const state = row.querySelector('[data-field="state"]');
      state.textContent = s.state;
      state.className = "state state-" + s.state;
      set("version", s.version || "");
      set("uptime", s.uptime_seconds === null ? "" : units.duration(s.uptime_seconds));
      set("checks", Object.entries(s.checks).map(([k, v]) => k + ": " + v).join(" ") + (s.error ? " " + s.error : ""));
      set("calls", Math.round(s.calls_total));
      set("errors", Math.round(s.errors_total));
      set("limited", Math.round(s.rate_limited_total));
      set("latency", s.mean_latency_seconds === null ? "" : (s.mean_latency_seconds * 1000).toFixed(1) + " ms");
    });
    document.querySelectorAll("svg[data-chart]").forEach((svg) => {
      const series = snapshot.series[svg.dataset.chart] || [];
      drawChart(svg, series.map((p) => p[0]), series.map((p) => p[Number(svg.dataset.metric)]), svg.dataset.unit);
    });
  }

  // A line chart with a y axis (0 and the maximum, in the metric's unit) and an x axis (first and last sample time).
  const SVG = "http://www.w3.org/2000/svg";
  const CHART = { left: 52, right: 316, top: 8, bottom: 70, width: 320, height: 90 };
  function svgNode(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, String(v)));
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function drawChart(svg, times, values, unit) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const format = units[unit] || ((x) => x.toFixed(2));
    const { left, right, top, bottom } = CHART;
    svg.append(
      svgNode("line", { x1: left, y1: top, x2: left, y2: bottom, class: "axis" }),
      svgNode("line", { x1: left, y1: bottom, x2: right, y2: bottom, class: "axis" }),
    );
    const numbers = values.map((v) => (v === null || v === undefined ? 0 : v));
    if (numbers.length < 2) {
      svg.append(svgNode("text", { x: left + 6, y: (top + bottom) / 2, class: "tick" }, "collecting samples…"));
      return;
    }
    const max = Math.max(...numbers);
    const scale = max > 0 ? max : 1;
    const span = Math.max(times[times.length - 1] - times[0], 1e-9);
    const x = (t) => left + ((t - times[0]) / span) * (right - left);
    const y = (v) => bottom - (v / scale) * (bottom - top);
    const coords = numbers.map((v, i) => x(times[i]).toFixed(1) + "," + y(v).toFixed(1)).join(" ");
    svg.append(
      svgNode("line", { x1: left, y1: top, x2: right, y2: top, class: "grid" }),
      svgNode("polyline", { points: coords, class: "line" }),
      svgNode("text", { x: left - 4, y: top + 4, class: "tick y", "text-anchor": "end" }, max > 0 ? format(max) : ""),
      svgNode("text", { x: left - 4, y: bottom, class: "tick y", "text-anchor": "end" }, format(0)),
      svgNode("text", { x: left, y: bottom + 14, class: "tick x" }, units.clock(times[0])),
      svgNode("text", { x: right, y: bottom + 14, class: "tick x", "text-anchor": "end" }, units.clock(times[times.length - 1])),
    );
  }

  // Breakers grid: rebuilt from each snapshot.
  function breakers(snapshot) {
    const grid = document.getElementById("breakers");
    if (!grid) return;
    const cells = [];
    Object.entries(snapshot.servers).forEach(([name, s]) =>
      Object.entries(s.breakers).forEach(([dep, state]) => cells.push([name, dep, state])));
    Object.entries(snapshot.dashboard_breakers).forEach(([dep, state]) => cells.push(["dashboard", dep, state]));
    grid.replaceChildren(...cells.map(([owner, dep, state]) => {
      const cell = el("div", { class: "breaker state-" + state, "data-breaker": owner + "/" + dep });
      cell.append(el("span", { class: "owner" }, owner), " ", el("span", { class: "dep" }, dep), " ", el("b", {}, state.toUpperCase()));
      return cell;
    }));
  }

  // Ralph task list.
  function tasks(data) {
    const body = document.getElementById("tasks");
    if (!body) return;
    if (data.error) { body.dataset.error = data.error; return; }
    body.replaceChildren(...(data.tasks || []).map((t) => {
      const row = el("tr", { "data-task": t.id });
      const link = el("a", { href: "/tasks/" + encodeURIComponent(t.id) }, t.id.slice(0, 8));
      const first = el("td"); first.append(link);
      const actions = el("td");
      if (["queued", "running", "awaiting_approval"].includes(t.status)) {
        const stop = el("button", { type: "button", class: "stop", "data-stop": t.id }, "Stop");
        stop.addEventListener("click", () => stopTask(t.id));
        actions.append(stop);
      }
      row.append(first, el("td", { class: "status" }, t.status), el("td", {}, t.completion_reason || ""),
        el("td", {}, t.backend), el("td", {}, t.iterations_done + "/" + t.max_iterations),
        el("td", {}, t.prompt_excerpt), actions);
      return row;
    }));
  }

  async function stopTask(id) {
    const out = document.querySelector("[data-result]");
    const response = await fetch("/tasks/" + encodeURIComponent(id) + "/stop", {
      method: "POST", headers: { "X-CSRF-Token": csrf(), Accept: "application/json" }, credentials: "same-origin",
    });
    const body = await response.json().catch(() => ({}));
    if (out) { out.className = response.ok ? "result ok" : "result error"; out.textContent = response.ok ? describe(body) : body.message || response.statusText; }
  }

  // One task with its iterations; actions shown only in the states they apply to.
  function verifySummary(v) {
    const how = v.exit_status === 0 ? "passed" : v.exit_status === null ? "killed at the time limit" : "failed, exit " + v.exit_status;
    return "after iteration " + v.iteration + ": " + how;
  }
  function task(data) {
    if (data.error) return;
    const table = document.getElementById("task");
    Object.entries(data.task).forEach(([field, value]) => {
      const cell = table.querySelector('[data-field="' + field + '"]');
      if (!cell) return;
      const format = units[cell.dataset.format];
      cell.textContent = value === null ? "" : format ? format(value) : value;
      if (field === "cost_usd" && !data.task.cost_known) cell.textContent += " (not reported)";
    });
    const status = data.task.status;
    document.querySelectorAll("#actions form[data-when]").forEach((form) => {
      form.hidden = !form.dataset.when.split(" ").includes(status);
    });
    const verify = document.getElementById("last-verify");
    if (verify && data.task.last_verify) {
      verify.hidden = false;
      verify.querySelector('[data-verify="summary"]').textContent = verifySummary(data.task.last_verify);
      verify.querySelector('[data-verify="output"]').textContent = data.task.last_verify.output;
    }
    const list = document.getElementById("iterations");
    list.replaceChildren(...data.iterations.map((it) => {
      const item = el("li");
      const facts = [it.status];
      if (it.exit_status !== null) facts.push("exit " + it.exit_status);
      if (it.duration_seconds !== null) facts.push(units.duration(it.duration_seconds));
      if (it.cost_usd !== null) facts.push(units.usd(it.cost_usd));
      item.append(el("b", {}, "#" + it.number), " " + facts.join(", "), el("pre", {}, it.output || it.error || ""));
      if (it.verify_output !== null) {
        const details = el("details", { class: "verify" });
        const passed = it.verify_exit_status === 0 ? "passed" : "failed";
        details.append(el("summary", {}, "verify: " + passed + (it.verify_exit_status === null ? "" : " (exit " + it.verify_exit_status + ")")),
          el("pre", {}, it.verify_output));
        item.append(details);
      }
      return item;
    }));
  }

  // The task form: the backend chosen last time is chosen again (if this server still offers it).
  function rememberBackend() {
    const backend = document.getElementById("backend");
    if (!backend) return;
    const saved = window.localStorage.getItem("mcpdash.backend");
    if (saved && [...backend.options].some((o) => o.value === saved)) backend.value = saved;
    backend.addEventListener("change", () => window.localStorage.setItem("mcpdash.backend", backend.value));
  }

  document.addEventListener("DOMContentLoaded", () => {
    wireAsyncForms();
    const page = document.body.dataset.page;
    if (page === "overview") stream("/events/status", "status", overview);
    if (page === "breakers") stream("/events/status", "status", breakers);
    if (page === "tasks") { rememberBackend(); stream("/events/tasks", "tasks", tasks); }
    if (page === "task") {
      const id = document.getElementById("task").dataset.taskId;
      stream("/events/tasks/" + encodeURIComponent(id), "task", task);
    }
  });
})();
