import { login } from "../api.js";
import { clear, h } from "../dom.js";

export function loginPage(main) {
  const error = h("p", { class: "error", role: "alert" });
  const user = h("input", { id: "login-user", name: "username", autocomplete: "username", required: true });
  const pass = h("input", { id: "login-pass", name: "password", type: "password", autocomplete: "current-password", required: true });
  const button = h("button", { type: "submit" }, "Log in");
  const form = h(
    "form",
    {
      class: "card login",
      onsubmit: async (event) => {
        event.preventDefault();
        error.textContent = "";
        button.disabled = true;
        try {
          await login(user.value.trim(), pass.value);
        } catch (err) {
          error.textContent = err.status === 401 ? "Wrong username, e-mail or password." : err.message;
        } finally {
          button.disabled = false;
        }
      },
    },
    h("h1", {}, "Log in to OpsFlow"),
    h("label", { for: "login-user" }, "Username or e-mail"),
    user,
    h("label", { for: "login-pass" }, "Password"),
    pass,
    button,
    error,
  );
  clear(main, form);
  user.focus();
}
