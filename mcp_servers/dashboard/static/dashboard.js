// mcp-stack dashboard: live updates over SSE, async forms with the CSRF header, small SVG charts.
// No inline script (the CSP forbids it); all data goes into the DOM through textContent.
"use strict";

(function () {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
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
          if (response.ok && form.id === "submit-task") form.reset();
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
      set("uptime", s.uptime_seconds === null ? "" : s.uptime_seconds);
      set("checks", Object.entries(s.checks).map(([k, v]) => k + ": " + v).join(" ") + (s.error ? " " + s.error : ""));
      set("calls", Math.round(s.calls_total));
      set("errors", Math.round(s.errors_total));
      set("limited", Math.round(s.rate_limited_total));
      set("latency", s.mean_latency_seconds === null ? "" : (s.mean_latency_seconds * 1000).toFixed(1) + " ms");
    });
    document.querySelectorAll("svg[data-chart]").forEach((svg) => {
      const points = (snapshot.series[svg.dataset.chart] || []).map((p) => p[Number(svg.dataset.metric)]);
      drawChart(svg, points);
    });
  }

  function drawChart(svg, values) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const numbers = values.map((v) => (v === null || v === undefined ? 0 : v));
    if (numbers.length < 2) return;
    const max = Math.max(...numbers, 1e-9);
    const step = 300 / (numbers.length - 1);
    const coords = numbers.map((v, i) => (i * step).toFixed(1) + "," + (58 - (v / max) * 56).toFixed(1)).join(" ");
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", coords);
    line.setAttribute("class", "line");
    svg.appendChild(line);
    const label = document.createElementNS("http://www.w3.org/2000/svg", "text");
    label.setAttribute("x", "2");
    label.setAttribute("y", "10");
    label.setAttribute("class", "max");
    label.textContent = max <= 1e-9 ? "0" : "max " + (max < 0.01 ? max.toExponential(1) : max.toFixed(2));
    svg.appendChild(label);
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

  // One task with its iterations.
  function task(data) {
    if (data.error) return;
    const table = document.getElementById("task");
    Object.entries(data.task).forEach(([field, value]) => {
      const cell = table.querySelector('[data-field="' + field + '"]');
      if (cell) cell.textContent = value === null ? "" : value;
    });
    const list = document.getElementById("iterations");
    list.replaceChildren(...data.iterations.map((it) => {
      const item = el("li");
      item.append(el("b", {}, "#" + it.number), " " + it.status + (it.exit_status === null ? "" : " exit " + it.exit_status),
        el("pre", {}, it.output || it.error || ""));
      return item;
    }));
  }

  document.addEventListener("DOMContentLoaded", () => {
    wireAsyncForms();
    const page = document.body.dataset.page;
    if (page === "overview") stream("/events/status", "status", overview);
    if (page === "breakers") stream("/events/status", "status", breakers);
    if (page === "tasks") stream("/events/tasks", "tasks", tasks);
    if (page === "task") {
      const id = document.getElementById("task").dataset.taskId;
      stream("/events/tasks/" + encodeURIComponent(id), "task", task);
    }
  });
})();
