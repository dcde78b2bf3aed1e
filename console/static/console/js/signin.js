import { requestCode, signIn, workspace } from "./session.js";

const form = document.getElementById("signin-form");
const fields = {
  workspace: document.getElementById("workspace"),
  email: document.getElementById("email"),
  password: document.getElementById("password"),
  code: document.getElementById("code"),
};
const errorBox = document.getElementById("signin-error");
const infoBox = document.getElementById("signin-info");
const codeField = document.getElementById("code-field");

if (!fields.workspace.value) fields.workspace.value = workspace();
(fields.workspace.value ? fields.email : fields.workspace).focus();
if (fields.email.value && fields.workspace.value) fields.password.focus();

function say(error, info = "") {
  errorBox.textContent = error;
  infoBox.textContent = info;
}

function basics() {
  const slug = fields.workspace.value.trim().toLowerCase();
  const email = fields.email.value.trim();
  if (!slug) {
    fields.workspace.focus();
    throw new Error("Enter your workspace.");
  }
  if (!email || !fields.email.checkValidity()) {
    fields.email.focus();
    throw new Error("Enter your e-mail address.");
  }
  return { slug, email };
}

async function busy(button, work) {
  button.disabled = true;
  try {
    await work();
  } catch (error) {
    say(error.message || String(error));
  } finally {
    button.disabled = false;
  }
}

function done() {
  location.assign(form.dataset.next || "/console/documents");
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const button = document.getElementById("sign-in");
  busy(button, async () => {
    say("");
    const { slug, email } = basics();
    if (!fields.password.value) {
      fields.password.focus();
      throw new Error("Enter your password, or ask for a code by e-mail.");
    }
    await signIn(slug, { email, password: fields.password.value });
    done();
  });
});

document.getElementById("send-code").addEventListener("click", (event) => {
  busy(event.currentTarget, async () => {
    say("");
    const { slug, email } = basics();
    const answer = await requestCode(slug, email);
    codeField.hidden = false;
    fields.code.focus();
    say("", answer.detail || "A code is on its way.");
  });
});

async function codeSignIn(button) {
  await busy(button, async () => {
    say("");
    const { slug, email } = basics();
    const code = fields.code.value.trim();
    if (!/^[0-9]{6}$/.test(code)) {
      fields.code.focus();
      throw new Error("The code is six digits.");
    }
    await signIn(slug, { email, code }, { code: true });
    done();
  });
}

document.getElementById("code-sign-in").addEventListener("click", (event) => codeSignIn(event.currentTarget));
fields.code.addEventListener("keydown", (event) => {
  if (event.key === "Enter") {
    event.preventDefault();
    codeSignIn(document.getElementById("code-sign-in"));
  }
});
