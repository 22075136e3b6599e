/*
 * The administration page: server figures, users, rooms and the audit log. Each panel lives in
 * ../admin/*.js; a change in one reloads the audit log (and the rooms, which a user change may
 * touch).
 */
import { me } from "../api.js";
import { errorText } from "../forms.js";
import { AuditPanel } from "../admin/audit.js";
import { RoomsPanel } from "../admin/rooms.js";
import { ServerPanel } from "../admin/server.js";
import { UsersPanel } from "../admin/users.js";
import { navigate } from "../urls.js";

const pageMessage = document.getElementById("page-message");

async function start() {
  const who = await me();
  if (who.status === 401) {
    navigate("/signin?next=/admin");
    return;
  }
  if (!who.ok) {
    pageMessage.textContent = errorText(who);
    return;
  }
  const audit = new AuditPanel();
  const rooms = new RoomsPanel(() => audit.load(0));
  const users = new UsersPanel(who.data.user, () => {
    audit.load(0);
    rooms.load();
  });
  const server = new ServerPanel(pageMessage);
  await Promise.all([server.load(), users.load(), rooms.load(), audit.load()]);
  document.getElementById("main").dataset.ready = "true";
}

start();
