// doppel console: the few things that need a script. Every page works as
// plain HTML forms; this adds drag-and-drop uploads with progress, live job
// progress over server-sent events, the two-factor step of sign-in without
// retyping the password, method-dependent form fields, and copy buttons.
"use strict";

(function () {
  const csrf = () => {
    const m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.content : "";
  };

  const say = (el, text, isError) => {
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("alert", !!isError);
    el.hidden = !text;
  };

  // Sign-in: ask the server first; reveal the code field when the account
  // has a second factor, keeping what was typed.
  document.querySelectorAll("form[data-login]").forEach((form) => {
    const mfa = form.querySelector("[data-mfa]");
    let status = form.parentElement.querySelector("[data-login-status]");
    if (!status) {
      status = document.createElement("div");
      status.setAttribute("role", "alert");
      status.setAttribute("data-login-status", "");
      status.hidden = true;
      form.parentElement.insertBefore(status, form);
    }
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const button = form.querySelector('button[type="submit"]');
      button.disabled = true;
      try {
        const resp = await fetch(form.action, {
          method: "POST",
          headers: { "x-doppel-probe": "1", "x-csrf-token": csrf() },
          body: new URLSearchParams(new FormData(form)),
          credentials: "same-origin",
        });
        const answer = await resp.json().catch(() => ({}));
        if (resp.ok && answer.location) {
          window.location.assign(answer.location);
          return;
        }
        if (answer.mfa_required) {
          mfa.hidden = false;
          say(status, "", false);
          const code = form.querySelector("#code");
          code.required = true;
          code.focus();
          return;
        }
        say(status, answer.error || "Signing in did not work. Try again.", true);
      } catch (e) {
        say(status, "The server could not be reached. Check your connection and try again.", true);
      } finally {
        button.disabled = false;
      }
    });
  });

  // Uploads: drop a file or pick one; the bar follows the bytes sent.
  document.querySelectorAll("[data-upload]").forEach((box) => {
    const zone = box.querySelector(".dropzone");
    const input = box.querySelector('input[type="file"]');
    const name = box.querySelector('input[name="name"]');
    const bar = box.querySelector("progress");
    const status = box.querySelector("[data-upload-status]");
    const form = box.querySelector("form");
    let chosen = null;

    const pick = (file) => {
      chosen = file;
      if (name && !name.value) name.value = file.name;
      say(status, `Ready: ${file.name} (${Math.round(file.size / 1024)} KiB). Press Upload.`, false);
    };
    input.addEventListener("change", () => { if (input.files[0]) pick(input.files[0]); });
    ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => {
      e.preventDefault();
      zone.classList.add("over");
    }));
    ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, (e) => {
      e.preventDefault();
      zone.classList.remove("over");
    }));
    zone.addEventListener("drop", (e) => {
      const f = e.dataTransfer && e.dataTransfer.files[0];
      if (f) pick(f);
    });

    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const file = chosen || input.files[0];
      if (!file) {
        say(status, "Choose a file first (CSV, Parquet, NDJSON, JSON or Excel).", true);
        input.focus();
        return;
      }
      const data = new FormData();
      data.append("name", name ? name.value : "");
      data.append("file", file, file.name);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("x-csrf-token", csrf());
      xhr.setRequestHeader("accept", "application/json");
      bar.hidden = false;
      bar.value = 0;
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) {
          bar.max = e.total;
          bar.value = e.loaded;
          say(status, `Uploading… ${Math.round((100 * e.loaded) / e.total)}%`, false);
        }
      });
      xhr.upload.addEventListener("load", () => say(status, "Reading and profiling the table…", false));
      xhr.addEventListener("load", () => {
        let answer = {};
        try { answer = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
        if (xhr.status >= 200 && xhr.status < 300 && answer.location) {
          window.location.assign(answer.location);
        } else {
          bar.hidden = true;
          say(status, answer.error || `The upload failed (HTTP ${xhr.status}).`, true);
        }
      });
      xhr.addEventListener("error", () => {
        bar.hidden = true;
        say(status, "The upload was interrupted. Check your connection and try again.", true);
      });
      xhr.send(data);
    });
  });

  // Live job progress: one event per change of the job; the page reloads
  // when the job ends so its results show.
  document.querySelectorAll("[data-job-events]").forEach((box) => {
    if (!window.EventSource) return;
    const source = new EventSource(box.getAttribute("data-job-events"));
    const bar = box.querySelector("progress");
    const message = box.querySelector("[data-job-message]");
    const state = box.querySelector("[data-job-state]");
    source.addEventListener("message", (e) => {
      let job;
      try { job = JSON.parse(e.data); } catch (err) { return; }
      if (bar) bar.value = Math.round(job.progress * 100);
      if (message && job.message) message.textContent = job.message;
      if (state) state.textContent = job.state;
      (job.steps || []).forEach((s) => {
        const row = box.querySelector(`[data-step="${CSS.escape(s.name)}"]`);
        if (!row) return;
        const badge = row.querySelector(".badge");
        badge.textContent = s.state === "done" ? "done" : s.state;
        badge.className = "badge" + (s.state === "done" ? " good" : s.state === "failed" ? " bad" : s.state === "running" ? " warn" : "");
        const detail = row.querySelector("[data-step-detail]");
        if (detail) detail.textContent = s.detail || "";
      });
      if (["succeeded", "failed", "cancelled"].includes(job.state)) {
        source.close();
        window.setTimeout(() => window.location.reload(), 400);
      }
    });
  });

  // Fields that only matter for one method (ε and δ for the DP method).
  document.querySelectorAll("[data-method-picker]").forEach((form) => {
    const update = () => {
      const checked = form.querySelector('input[name="method"]:checked');
      const method = checked ? checked.value : "";
      form.querySelectorAll("[data-for-method]").forEach((el) => {
        const wanted = el.getAttribute("data-for-method").split(" ");
        el.hidden = !wanted.includes(method);
        el.querySelectorAll("input, select").forEach((i) => { i.disabled = el.hidden; });
      });
    };
    form.addEventListener("change", update);
    update();
  });

  // Ask before destroying things.
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (ev) => {
      if (!window.confirm(form.getAttribute("data-confirm"))) ev.preventDefault();
    });
  });

  // Copy a secret shown once.
  document.querySelectorAll("[data-copy]").forEach((button) => {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const target = document.getElementById(button.getAttribute("data-copy"));
      if (!target) return;
      try {
        await navigator.clipboard.writeText(target.textContent.trim());
        button.textContent = "Copied";
      } catch (e) {
        button.textContent = "Select and copy it by hand";
      }
    });
  });
})();
