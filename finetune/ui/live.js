// The Run section's live line (finetune/ui/live.py): once a second, the watched run's progress bar and new
// log lines from GET tb-live/RUN, written into the page without a Gradio event. The progress wrapper
// (.tb-live) names the run, language, state and queue the last Gradio view drew, and whether its plots have
// points; when the answer's state or queue differs, or the first points have arrived, the hidden refresh
// button asks Gradio to redraw what follows them (Stop, Resume, the queue, the config panel, the plots). The log box (.tb-logbox[data-off]) says up to which byte of train.log it holds.
() => {
  if (window.tbLive) return;
  const KEEP = 300; // log lines kept on screen, as runs.LOG_LINES
  let busy = false;
  let asked = 0;
  const append = (box, lines, off) => {
    const pre = box.querySelector("pre");
    const old = pre.textContent ? pre.textContent.split("\n") : [];
    pre.textContent = old.concat(lines).slice(-KEEP).join("\n");
    box.dataset.off = String(off);
  };
  const tick = async () => {
    const live = document.querySelector("#tb-progress .tb-live[data-run]");
    if (busy || !live || document.hidden) return;
    const run = live.dataset.run;
    const box = document.querySelector(`#tb-log .tb-logbox[data-off]`);
    const off = box && box.dataset.run === run ? box.dataset.off : "-1";
    busy = true;
    try {
      const query = new URLSearchParams({ lang: live.dataset.lang || "en", log: off });
      const response = await fetch(`tb-live/${encodeURIComponent(run)}?${query}`, { cache: "no-store" });
      if (!response.ok) return;
      const got = await response.json();
      if (!live.isConnected) return; // Gradio drew another run meanwhile: its wrapper is new
      live.innerHTML = got.progress;
      if (box && box.isConnected && box.dataset.off === off && got.log.length) append(box, got.log, got.log_off);
      const moved = got.state !== live.dataset.state || JSON.stringify(got.queue) !== live.dataset.queue;
      const firstPoints = live.dataset.plotted === "0" && got.points > 0; // the plots draw them at once
      if ((moved || firstPoints) && Date.now() - asked > 3000) { // one redraw at a time: it takes a moment
        asked = Date.now();
        document.querySelector("#tb-live-refresh")?.click();
      }
    } catch (error) {
      console.debug("tuneboard: live line", error); // the server restarting: the next second tries again
    } finally {
      busy = false;
    }
  };
  window.tbLive = setInterval(tick, 1000);
}
