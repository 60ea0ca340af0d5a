// The join secret typed into the page. It lives in this tab's
// sessionStorage only (gone when the tab closes) and is sent only with
// promote and remove: the calls the node checks it for.

const key = "kvd-join-secret";

export function secret() {
  return sessionStorage.getItem(key) || "";
}

export function bindSecret(input) {
  input.value = secret();
  input.addEventListener("input", () => {
    if (input.value) sessionStorage.setItem(key, input.value);
    else sessionStorage.removeItem(key);
  });
}
