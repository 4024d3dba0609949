// Gradio's own texts (the file drop zone, the footer, Settings) follow the browser's language, not the
// page's switch. Gradio 6.31 keeps svelte-i18n's changeLocale in its hashed module assets/core-<hash>.js
// and on no global; import() of the URL the page already loaded returns that same live module, so calling
// its changeLocale switches the page. Internal, so it fails soft: a warning, and Gradio's texts stay put.
// The progress overlay writes "queue: 2/3 |" and "processing |" without any dictionary: an observer
// rewrites those words (locales/gradio.yaml's tracker, filled in by finetune/ui/page.py).
async (lang) => {
  const locale = lang === "ja" ? "ja" : "en";
  window.tbTracker = __TRACKER__[locale] || null;
  if (window.tbTracker && !window.tbTrackerObserver) {  // English needs none: nothing to rewrite
    const tracker = '[data-testid="status-tracker"]';
    const rewrite = (el) => {  // the tracker's few text nodes only, never the rest of the page
      const words = window.tbTracker;
      const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
      while (words && walker.nextNode()) {
        const node = walker.currentNode;
        const text = node.nodeValue || "";
        const turned = text.replace(/^(\s*)queue:/, `$1${words.queue}:`)
          .replace(/^(\s*)processing \|/, `$1${words.processing} |`);
        if (turned !== text) node.nodeValue = turned;
      }
    };
    window.tbTrackerObserver = new MutationObserver((changes) => {
      if (!window.tbTracker) return;
      for (const change of changes) {
        const node = change.target;
        const target = node.nodeType === Node.ELEMENT_NODE ? node : node.parentElement;
        const el = target?.closest(tracker);
        if (el) rewrite(el);
        for (const added of change.addedNodes || []) {  // a tracker drawn inside a new subtree
          if (added.nodeType === Node.ELEMENT_NODE) added.querySelectorAll(tracker).forEach(rewrite);
        }
      }
    });
    window.tbTrackerObserver.observe(document.body, { subtree: true, childList: true, characterData: true });
  }
  const url = [...document.querySelectorAll('link[rel="modulepreload"], script[type="module"]')]
    .map((el) => el.href || el.src)
    .concat(performance.getEntriesByType("resource").map((entry) => entry.name))
    .find((u) => /\/assets\/core-[\w-]+\.js(\?|$)/.test(u || ""));
  if (!url) {
    console.warn("tuneboard: gradio's core module not found; its own texts keep the browser's language");
    return lang;
  }
  try {
    (await import(url)).changeLocale(locale);
    for (let i = 0; i < 100 && document.documentElement.lang !== locale; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20)); // the ja dictionary loads on demand
    }
  } catch (error) {
    console.warn("tuneboard: could not switch gradio's language", error);
  }
  return lang;
}
