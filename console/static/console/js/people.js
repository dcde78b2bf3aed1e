import { api, user } from "./session.js";
import { el, setupShell, toast } from "./ui.js";

setupShell();

const tbody = document.querySelector("#people tbody");
const info = document.getElementById("people-message");
const ROLES = [
  ["admin", "Admin"],
  ["member", "Member"],
  ["viewer", "Viewer"],
];

function say(text) {
  info.textContent = text;
}

function row(person) {
  const me = user()?.id === person.id;
  const role = el("select", { "aria-label": `Role of ${person.email}` });
  for (const [value, label] of ROLES) role.append(el("option", { value, selected: value === person.role }, label));
  role.addEventListener("change", async () => {
    try {
      const updated = await api(`/users/${person.id}/`, { method: "PATCH", json: { role: role.value } });
      say(`${updated.email} is now ${role.selectedOptions[0].textContent.toLowerCase()}.`);
    } catch (error) {
      role.value = person.role;
      say(error.message);
    }
  });
  const action = person.is_active
    ? el("button", { type: "button", class: "danger", "aria-label": `Deactivate ${person.email}`, disabled: me, onclick: () => setActive(person, false) }, "Deactivate")
    : el("button", { type: "button", "aria-label": `Reactivate ${person.email}`, onclick: () => setActive(person, true) }, "Reactivate");
  return el(
    "tr",
    { "data-id": person.id },
    el("td", {}, person.email, me ? el("span", { class: "muted" }, " (you)") : ""),
    el("td", { dir: "auto" }, person.full_name || ""),
    el("td", {}, role),
    el("td", {}, person.is_active ? "Active" : "Deactivated"),
    el("td", { class: "row-actions" }, action),
  );
}

async function load() {
  const data = await api("/users/?page_size=100");
  tbody.replaceChildren(...data.results.map(row));
  document.getElementById("people").dataset.loaded = "true";
}

async function setActive(person, active) {
  try {
    if (active) await api(`/users/${person.id}/`, { method: "PATCH", json: { is_active: true } });
    else await api(`/users/${person.id}/`, { method: "DELETE" });
    say(`${person.email} is ${active ? "active again" : "deactivated"}.`);
    await load();
  } catch (error) {
    say(error.message);
  }
}

document.getElementById("invite").addEventListener("submit", async (event) => {
  event.preventDefault();
  const email = document.getElementById("invite-email");
  const role = document.getElementById("invite-role");
  try {
    const person = await api("/users/", { method: "POST", json: { email: email.value.trim(), role: role.value } });
    say(`Invited ${person.email}: they get an e-mail with a link to sign in.`);
    email.value = "";
    await load();
  } catch (error) {
    say(error.message);
  }
});

load().catch((error) => toast(error.message));
