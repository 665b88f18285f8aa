import { api, auth } from "../api.js";
import { h, mount } from "../dom.js";

export async function signinPage(view) {
  const input = h("input", { id: "api-key", type: "password", autocomplete: "off",
    placeholder: "cgd_…", required: true });
  const message = h("p", { class: "muted" },
    "The key is kept for this tab only (sessionStorage) and sent as a Bearer token.");
  const form = h("form", { class: "signin", onsubmit: async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    try {
      await api("/v1/datasets", { limit: 1 }, key);  // a wrong key answers 401
    } catch (err) {
      message.className = "error";
      message.textContent = err.status === 401 ? "That API key was not accepted." : String(err.message);
      return;
    }
    auth.set(key);
    window.location.hash = "#/jobs";
  } },
  h("h1", {}, "Sign in"), h("label", { for: "api-key" }, "API key"), input,
  h("button", { class: "primary", type: "submit" }, "Sign in"), message);
  mount(view.root, form);
  input.focus();
}
