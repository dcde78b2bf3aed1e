import { api } from "./session.js";
import { el, setupShell, toast } from "./ui.js";

setupShell();

const form = document.getElementById("settings");
const errorBox = document.getElementById("settings-error");
const infoBox = document.getElementById("settings-info");
const $ = (id) => document.getElementById(id);
const deployment = (document.body.dataset.models || "").split(",").filter(Boolean);

function fill(tenant) {
  const effective = tenant.effective_settings || {};
  $("tenant-name").value = tenant.name;
  const allowed = effective.allowed_models || [];
  const models = [...new Set([...deployment, ...allowed])];
  $("allowed-models").replaceChildren(
    ...models.map((model) => {
      const id = `model-${model}`;
      return el("label", { for: id }, el("input", { type: "checkbox", id, value: model, checked: allowed.includes(model) }), ` ${model}`);
    }),
  );
  $("default-model").replaceChildren(...allowed.map((model) => el("option", { value: model, selected: model === effective.default_model }, model)));
  $("system-prompt").value = effective.system_prompt || "";
  $("answer-language").value = effective.answer_language || "auto";
  $("tenant-quota").value = effective.daily_token_quota ?? "";
  $("user-quota").value = effective.user_daily_token_quota ?? "";
  $("signup").checked = Boolean(effective.signup_allowed);
}

const saveButton = form.querySelector('button[type="submit"]');
saveButton.disabled = true;

async function load() {
  fill(await api("/tenant/"));
  saveButton.disabled = false;
  form.dataset.loaded = "true";
}

function number(id) {
  const value = $(id).value.trim();
  return value === "" ? null : Number(value);
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  errorBox.textContent = "";
  infoBox.textContent = "";
  const allowed = [...$("allowed-models").querySelectorAll("input:checked")].map((box) => box.value);
  const settings = {
    allowed_models: allowed,
    default_model: allowed.includes($("default-model").value) ? $("default-model").value : allowed[0],
    system_prompt: $("system-prompt").value,
    answer_language: $("answer-language").value.trim() || "auto",
    daily_token_quota: number("tenant-quota"),
    user_daily_token_quota: number("user-quota"),
    signup_allowed: $("signup").checked,
  };
  try {
    fill(await api("/tenant/", { method: "PATCH", json: { name: $("tenant-name").value.trim(), settings } }));
    infoBox.textContent = "Settings saved.";
  } catch (error) {
    errorBox.textContent = error.message;
  }
});

load().catch((error) => toast(error.message));
