// What both pages share: their configuration, a per-frame checksum for tests, and state on <body>.

export async function loadConfig() {
  const response = await fetch("config.json", { cache: "no-store" });
  if (!response.ok) throw new Error(`config.json: ${response.status}`);
  return response.json();
}

/** FNV-1a over a frame's bytes: lets a test compare, per frame, what was sent with what was played. */
export function checksum(bytes) {
  let hash = 0x811c9dc5;
  for (const byte of bytes) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash;
}

/** Set data-* attributes on <body>: the page's state for tests and assistive technology alike. */
export function show(fields) {
  for (const [name, value] of Object.entries(fields)) document.body.dataset[name] = String(value);
}

export function languageOptions(select, languages, chosen) {
  for (const [code, name] of Object.entries(languages)) {
    const option = new Option(`${name} (${code})`, code, false, code === chosen);
    select.append(option);
  }
}

export const wsUrl = (config) => new URL(config.webSocketUrl, location.href).href.replace(/^http/, "ws");
