// k6 run -e BASE_URL=http://host:port loadtest/k6/load.js   (scenario "load" of loadtest/lib/traffic.js)
import { settings } from './config.js';
import { shopper } from './flow.js';

const { options: o, baseUrl, pickProduct } = settings('load');
export const options = o;

export default function () {
  shopper(baseUrl, pickProduct);
}
