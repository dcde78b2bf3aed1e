import { setupShell } from "./ui.js";

setupShell();
