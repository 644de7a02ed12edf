// Show the chosen indicator as soon as it is picked; the forms still work without JavaScript.
document.addEventListener("DOMContentLoaded", () => {
  for (const select of document.querySelectorAll("select#indicator-select")) {
    select.addEventListener("change", () => select.form.submit());
  }
});
