// Gradio's own texts (the file drop zone, the footer, Settings) follow the browser's language, not the
// page's switch. Gradio 6.31 keeps svelte-i18n's changeLocale in its hashed module assets/core-<hash>.js
// and on no global; import() of the URL the page already loaded returns that same live module, so calling
// its changeLocale switches the page. Internal, so it fails soft: a warning, and Gradio's texts stay put.
async (lang) => {
  const locale = lang === "ja" ? "ja" : "en";
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
