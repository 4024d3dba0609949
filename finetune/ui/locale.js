// Gradio's own texts (the file drop zone, the footer, Settings) follow the browser's language, not the
// page's switch. Gradio 6.31 keeps svelte-i18n's changeLocale in its hashed module assets/core-<hash>.js
// and on no global; import() of the URL the page already loaded returns that same live module, so calling
// its changeLocale switches the page. Internal, so it fails soft: a warning, and Gradio's texts stay put.
// The progress overlay writes "queue: 2/3 |" and "processing |" without any dictionary: an observer
// rewrites those words (locales/gradio.yaml's tracker, filled in by finetune/ui/page.py).
async (lang) => {
  const locale = lang === "ja" ? "ja" : "en";
  window.tbTracker = __TRACKER__[locale] || null;
  if (!window.tbTrackerObserver) {
    const rewrite = (node) => {
      const words = window.tbTracker;
      const text = node.nodeValue || "";
      if (!words || !node.parentElement?.closest('[data-testid="status-tracker"]')) return;
      const turned = text.replace(/^(\s*)queue:/, `$1${words.queue}:`).replace(/^(\s*)processing \|/, `$1${words.processing} |`);
      if (turned !== text) node.nodeValue = turned;
    };
    window.tbTrackerObserver = new MutationObserver((changes) => {
      for (const change of changes) {
        if (change.type === "characterData") rewrite(change.target);
        for (const added of change.addedNodes || []) {
          const walker = document.createTreeWalker(added, NodeFilter.SHOW_TEXT);
          if (added.nodeType === Node.TEXT_NODE) rewrite(added);
          while (walker.nextNode()) rewrite(walker.currentNode);
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
