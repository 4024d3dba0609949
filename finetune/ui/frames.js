// Runs first in the page's <head>, before Gradio's modules: finetune/ui/head.py writes it into GET /'s HTML.
// Gradio 6.31's status tracker counts an event's elapsed seconds in a requestAnimationFrame loop that stops
// only when its status leaves "pending"; a tracker unmounted while pending (two on every page, from the
// app's own "Loading...") never stops, so an idle page drew 60 frames a second: 9% of a core here, taken
// from a training run on the same CPU. The tracker shows tenths of a second: its ticks are run at 10 Hz.
(() => {
  const raf = window.requestAnimationFrame.bind(window);
  const TICK = /^\(\)=>\{\w+\(\w+,\(performance\.now\(\)-\w+\(\w+\)\)\/1e3\),\w+&&\w+\(\)\}$/;
  window.tbSlowTicks = 0;
  window.requestAnimationFrame = (callback) => {
    if (!TICK.test(String(callback))) return raf(callback);
    window.tbSlowTicks += 1;
    return -setTimeout(() => raf(callback), 100); // never cancelled: the loop checks its own flag
  };
})();
